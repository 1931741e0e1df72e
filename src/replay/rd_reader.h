// Streaming reader for freedreno .rd / .rd.gz captures (PROTOCOL.md §9.1).
//
// Gzip is detected by its magic bytes; plain files are read as they are. Every failure is an
// RdError naming the offset in the uncompressed stream; allocation is bounded by the data that
// actually arrives (payloads are read in chunks) and by kMaxSectionBytes.
//
//   auto r = RdReader::open(path);
//   if (!r) die(r.error().what());
//   RdReader& rd = r.value();
//   Section s;
//   while (rd.next(s) == RdReader::Next::Section) { ... s.payload ... }
//   if (rd.failed()) die(rd.error().what());
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "replay/rd_error.h"
#include "replay/rd_format.h"

namespace fdnc::rd {

struct SectionHeader {
    uint32_t type = 0;     // raw rd_sect_type (may be unknown)
    uint32_t size = 0;     // payload bytes (already checked: >= 0, bounded)
    uint64_t offset = 0;   // offset of the 8-byte header in the uncompressed stream
};

struct Section {
    SectionHeader header;
    std::span<const uint8_t> payload;   // valid until the next call on the reader
};

class RdReader {
  public:
    enum class Next { Section, End, Error };

    static Result<RdReader> open(const std::string& path);
    RdReader(RdReader&&) noexcept;
    RdReader& operator=(RdReader&&) noexcept;
    ~RdReader();

    // Next section header; any unread payload of the previous section is skipped first.
    // Filler pairs (§9.1) are skipped silently.
    Next next_header(SectionHeader& out);
    // Appends the current section's payload to dst (the caller's byte store: no second copy).
    bool read_payload(std::vector<uint8_t>& dst);
    // next_header + read_payload into an internal buffer.
    Next next(Section& out);

    bool failed() const { return failed_; }
    const RdError& error() const { return error_; }
    bool compressed() const { return compressed_; }
    uint64_t offset() const { return offset_; }   // uncompressed bytes consumed so far
    uint64_t filler_pairs() const { return filler_pairs_; }

  private:
    struct Gz;
    RdReader() = default;
    size_t read_some(uint8_t* dst, size_t n);
    bool skip_payload();
    Next fail(RdErrc code, uint64_t offset, std::string detail);

    std::unique_ptr<Gz> gz_;
    bool compressed_ = false;
    uint64_t file_size_ = 0;     // on-disk size; bounds payloads exactly when not compressed
    uint64_t offset_ = 0;
    uint64_t filler_pairs_ = 0;
    SectionHeader cur_{};
    uint64_t pending_ = 0;       // unread payload bytes of cur_
    bool failed_ = false;
    bool seen_any_ = false;
    RdError error_{};
    std::vector<uint8_t> scratch_;
};

} // namespace fdnc::rd
