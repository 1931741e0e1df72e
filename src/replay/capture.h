// The replay model of an .rd capture: header facts, an ordered list of submits, and buffer
// lifetimes derived across submits so a replayer can allocate at first use and free after last.
//
// Submit boundaries follow RP4 (PROTOCOL.md §9.5): an RD_GPUADDR that arrives after an
// RD_CMDSTREAM_ADDR starts a new submit. Buffer contents live once in Capture::bytes and are
// referenced by ByteRange everywhere else.
//
// Per submit there are two views:
//  - decls: every RD_GPUADDR (+ RD_BUFFER_CONTENTS) exactly as the file has it (the kernel may
//    declare a bo and then again just the cmd range inside it, so decls can overlap);
//  - buffers: what must be allocated: overlapping decls merged, sorted by iova, disjoint, each
//    with its uploads (offset in buffer + bytes) in file order. Cmdstreams point into these.
//    Ranges are widened to the builder's alignment first (load_capture: 4 KiB pages), and a
//    cmdstream no decl covers gets an implicit buffer (see Anomalies::cmds_outside_buffers).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fdnc::rd {

inline constexpr uint32_t kNoBuffer = 0xffffffffu;

struct ByteRange {   // into Capture::bytes
    uint64_t offset = 0;
    uint64_t size = 0;
    bool operator==(const ByteRange&) const = default;
};

struct BufferDecl {  // one RD_GPUADDR and its RD_BUFFER_CONTENTS, as written in the file
    uint64_t iova = 0;
    uint64_t size = 0;
    std::optional<ByteRange> contents;
};

struct Upload {
    uint64_t offset_in_buffer = 0;
    ByteRange data;
};

struct SubmitBuffer {        // one allocation a submit needs (aligned, see the file comment)
    uint32_t lifetime = 0;   // index into Capture::lifetimes
    uint64_t iova = 0;
    uint64_t size = 0;
    std::vector<Upload> uploads;
    bool has_cmdstream = false;   // RP7 adds DUMP for these
    bool implicit = false;        // no decl covers it: made for an undeclared cmdstream
};

struct CmdStream {
    uint64_t iova = 0;
    uint32_t size_bytes = 0;                 // §9.3: the file stores dwords
    uint32_t buffer = kNoBuffer;             // index into Submit::buffers (kNoBuffer only if size 0)
    uint64_t offset_in_buffer = 0;
};

struct Submit {
    std::string cmd;                  // last RD_CMD text at the submit's first cmdstream (RP6)
    uint64_t file_offset = 0;         // offset of the submit's first section
    std::vector<BufferDecl> decls;
    std::vector<SubmitBuffer> buffers;
    std::vector<CmdStream> cmds;
};

// A buffer identity (iova, size) over a run of submits. If an overlapping but different buffer
// is declared in between, the identity starts a new lifetime, so lifetimes whose ranges overlap
// never overlap in time: a replayer can place each one at its original iova.
struct BufferLifetime {
    uint64_t iova = 0;
    uint64_t size = 0;
    uint32_t first_submit = 0;
    uint32_t last_submit = 0;
    uint32_t uses = 0;               // submits that declare it
    uint32_t uploads = 0;            // submits that upload contents into it
    bool contents_change = false;    // two uploading submits sent different bytes
};

struct WrBuffer {   // RD_WRBUFFER (§9.2): dump this range to a file after replay
    uint64_t iova = 0;
    uint64_t size = 0;
    bool clear = false;
    std::string name;
};

// Oddities found while building the model; none stops loading, all are worth reporting.
struct Anomalies {
    uint64_t cmds_outside_buffers = 0;   // cmdstream no decl covers (got an implicit buffer)
    uint64_t merged_decls = 0;           // decls folded into an overlapping decl of the same submit
    uint64_t zero_size_decls = 0;
    uint64_t trailing_decls = 0;         // decls after the last cmdstream (no submit follows)
    uint64_t filler_pairs = 0;
};

struct CaptureStats {
    uint64_t submits = 0;
    uint64_t cmdstreams = 0;
    uint64_t decls = 0;
    uint64_t buffers = 0;              // lifetimes
    uint64_t identities = 0;           // distinct (iova, size)
    uint64_t content_bytes = 0;        // all RD_BUFFER_CONTENTS payloads
    uint64_t buffer_bytes = 0;         // sum of lifetime sizes
    uint64_t max_live_buffers = 0;
    uint64_t max_live_bytes = 0;
    uint64_t iova_min = 0;             // lowest buffer start (0 if none)
    uint64_t iova_end = 0;             // highest buffer end
    uint64_t skipped_sections = 0;
};

struct Capture {
    uint32_t gpu_id = 0;                 // 0 = no RD_GPU_ID
    std::optional<uint64_t> chip_id;     // kernel captures of old GPUs have none
    std::vector<std::string> processes;  // distinct process names, first-seen order
    std::vector<uint8_t> bytes;          // shared content store
    std::vector<Submit> submits;
    std::vector<BufferLifetime> lifetimes;
    std::vector<WrBuffer> wrbuffers;
    std::map<uint32_t, uint64_t> skipped_sections;   // section type -> count
    Anomalies anomalies;
    bool compressed = false;             // source was gzip

    std::span<const uint8_t> data(ByteRange r) const {
        return std::span<const uint8_t>(bytes).subspan(r.offset, r.size);
    }
    CaptureStats stats() const;
};

// "glmark2-es2/53710: fence=165247" (kernel) -> "glmark2-es2"; a Mesa name stays as it is.
std::string process_name(std::string_view cmd_text);

// Builds a Capture from the file's events, in file order; the loader drives it, and so can
// a recorder or a test. finish() resolves buffers and derives lifetimes.
class CaptureBuilder {
  public:
    // Allocation granularity (power of two; anything else means 1). Default 1: ranges exactly
    // as declared. Decls keep their exact values either way.
    void set_alignment(uint64_t align);
    void set_gpu_id(uint32_t id) { c_.gpu_id = id; }
    void set_chip_id(uint64_t id) { c_.chip_id = id; }
    void cmd_text(std::string text);
    void gpuaddr(uint64_t iova, uint64_t size, uint64_t file_offset = 0);
    // Appends contents to the store and binds them to the preceding gpuaddr.
    // Returns false if there is no such gpuaddr or it already has contents / is smaller.
    bool contents(std::span<const uint8_t> data);
    // For the loader: the bytes at [offset, offset+size) are already in store().
    bool contents_in_store(uint64_t offset, uint64_t size);
    void cmdstream(uint64_t iova, uint32_t size_bytes, uint64_t file_offset = 0);
    void wrbuffer(WrBuffer wb) { c_.wrbuffers.push_back(std::move(wb)); }
    void skipped(uint32_t type) { ++c_.skipped_sections[type]; }
    void set_compressed(bool v) { c_.compressed = v; }
    void add_filler_pairs(uint64_t n) { c_.anomalies.filler_pairs += n; }

    std::vector<uint8_t>& store() { return c_.bytes; }
    // Why the last contents()/contents_in_store() failed.
    const std::string& last_problem() const { return problem_; }
    // Size of the gpuaddr the next contents bind to (0 if none).
    std::optional<uint64_t> pending_decl_size() const;

    Capture finish() &&;

  private:
    void close_submit();
    Capture c_;
    uint64_t align_ = 1;
    Submit open_{};
    bool open_has_decl_or_cmd_ = false;
    bool bound_ = false;         // open_.decls.back() may still take contents
    std::string last_cmd_;
    std::string problem_;
};

// Per submit: the lifetimes to allocate before it (first use) and to free after it (last use),
// each list in iova order. The replayer's whole buffer plan in two loops.
struct LifetimeEvents {
    std::vector<std::vector<uint32_t>> alloc_before;   // [submit] -> lifetime indices
    std::vector<std::vector<uint32_t>> free_after;
};
LifetimeEvents lifetime_events(const Capture& c);

// RP6: Mesa's replay skips submits whose RD_CMD starts with fdperf, chrome, surfaceflinger or 'X'
// unless told otherwise (the X server's own submits in a glxgears capture, for example).
bool rp6_default_skips(std::string_view cmd_text);

// Empty if a and b describe the same stream (header, cmd texts, decls with contents bytes,
// cmdstreams, wrbuffers); otherwise the first difference, for test and tool messages.
std::string capture_diff(const Capture& a, const Capture& b);

} // namespace fdnc::rd
