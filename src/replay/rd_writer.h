// Writes .rd captures (PROTOCOL.md §9.4, Mesa msm backend order): RD_GPU_ID, RD_CHIP_ID, then per
// submit RD_CMD, per buffer RD_GPUADDR (12-byte form) + optional RD_BUFFER_CONTENTS, and one
// RD_CMDSTREAM_ADDR per cmdstream. A path ending in ".gz" is gzip-compressed.
//
//   auto w = RdWriter::create("out.rd.gz");
//   w.value().header(630, 0x06030001);
//   w.value().cmd("fdnc-replay");
//   w.value().buffer(iova, size, bytes);
//   w.value().cmdstream(iova, size_bytes);
//   if (!w.value().close()) report(w.value().error().what());
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "replay/capture.h"
#include "replay/rd_error.h"

namespace fdnc::rd {

class RdWriter {
  public:
    static Result<RdWriter> create(const std::string& path);
    RdWriter(RdWriter&&) noexcept;
    RdWriter& operator=(RdWriter&&) noexcept;
    ~RdWriter();   // closes if still open (errors then go unreported: call close())

    // gpu_id 0 writes no RD_GPU_ID; a missing chip_id writes no RD_CHIP_ID.
    bool header(uint32_t gpu_id, std::optional<uint64_t> chip_id);
    bool cmd(std::string_view text);    // NUL-padded to 4 bytes, like the kernel
    // size must fit u32 (§9.3) and contents.size() <= size.
    bool buffer(uint64_t iova, uint64_t size, std::span<const uint8_t> contents = {});
    bool cmdstream(uint64_t iova, uint32_t size_bytes);   // size_bytes % 4 == 0
    bool wrbuffer(const WrBuffer& wb);
    bool close();

    bool failed() const { return failed_; }
    const RdError& error() const { return error_; }
    uint64_t bytes_written() const { return offset_; }   // uncompressed

  private:
    struct Gz;
    RdWriter() = default;
    bool section(uint32_t type, std::span<const uint8_t> a, std::span<const uint8_t> b = {});
    bool fail(std::string detail);

    std::unique_ptr<Gz> gz_;
    uint64_t offset_ = 0;
    bool failed_ = false;
    RdError error_{};
};

// Writes every submit's decls (with contents) and cmdstreams, in file order, so that
// load_capture(path) gives a capture with an empty capture_diff against c.
Result<uint64_t> write_capture(const std::string& path, const Capture& c);

} // namespace fdnc::rd
