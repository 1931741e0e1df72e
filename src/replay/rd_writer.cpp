#include "replay/rd_writer.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "replay/rd_format.h"

namespace fdnc::rd {

namespace {
void put32(std::vector<uint8_t>& v, uint32_t x) {
    for (int i = 0; i < 4; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}
void put64(std::vector<uint8_t>& v, uint64_t x) {
    put32(v, static_cast<uint32_t>(x));
    put32(v, static_cast<uint32_t>(x >> 32));
}
bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
} // namespace

struct RdWriter::Gz {
    gzFile f = nullptr;
    ~Gz() {
        if (f) gzclose(f);
    }
};

RdWriter::RdWriter(RdWriter&&) noexcept = default;
RdWriter& RdWriter::operator=(RdWriter&&) noexcept = default;
RdWriter::~RdWriter() = default;

Result<RdWriter> RdWriter::create(const std::string& path) {
    RdWriter w;
    w.gz_ = std::make_unique<Gz>();
    // "T" = zlib's transparent (uncompressed) write mode.
    w.gz_->f = gzopen(path.c_str(), ends_with(path, ".gz") ? "wb6" : "wbT");
    if (!w.gz_->f)
        return RdError{RdErrc::WriteFailed, 0, path + ": " + (errno ? std::strerror(errno) : "gzopen failed")};
    return w;
}

bool RdWriter::fail(std::string detail) {
    failed_ = true;
    error_ = RdError{RdErrc::WriteFailed, offset_, std::move(detail)};
    return false;
}

bool RdWriter::section(uint32_t type, std::span<const uint8_t> a, std::span<const uint8_t> b) {
    if (failed_) return false;
    if (!gz_ || !gz_->f) return fail("writer is closed");
    const uint64_t size = a.size() + b.size();
    if (size > kMaxSectionBytes) return fail("section of " + std::to_string(size) + " bytes exceeds the limit");
    std::vector<uint8_t> hdr;
    put32(hdr, type);
    put32(hdr, static_cast<uint32_t>(size));
    for (std::span<const uint8_t> part : {std::span<const uint8_t>(hdr), a, b}) {
        if (part.empty()) continue;
        if (gzwrite(gz_->f, part.data(), static_cast<unsigned>(part.size())) != static_cast<int>(part.size())) {
            int zerr = 0;
            return fail(std::string("write error: ") + gzerror(gz_->f, &zerr));
        }
    }
    offset_ += kSectionHeaderBytes + size;
    return true;
}

bool RdWriter::header(uint32_t gpu_id, std::optional<uint64_t> chip_id) {
    if (gpu_id != 0) {
        std::vector<uint8_t> p;
        put32(p, gpu_id);
        if (!section(static_cast<uint32_t>(SectType::gpu_id), p)) return false;
    }
    if (chip_id) {
        std::vector<uint8_t> p;
        put64(p, *chip_id);   // §9.2: 8 bytes
        if (!section(static_cast<uint32_t>(SectType::chip_id), p)) return false;
    }
    return true;
}

bool RdWriter::cmd(std::string_view text) {
    std::vector<uint8_t> p(text.begin(), text.end());
    p.resize((p.size() + 4) & ~size_t{3}, 0);   // at least one NUL, multiple of 4 (§9.2 kernel form)
    return section(static_cast<uint32_t>(SectType::cmd), p);
}

bool RdWriter::buffer(uint64_t iova, uint64_t size, std::span<const uint8_t> contents) {
    if (size > UINT32_MAX) return fail("buffer of " + std::to_string(size) + " bytes does not fit RD_GPUADDR's u32 size");
    if (contents.size() > size) return fail("contents larger than the buffer");
    std::vector<uint8_t> p;
    put32(p, static_cast<uint32_t>(iova));   // §9.3: lo, size, hi
    put32(p, static_cast<uint32_t>(size));
    put32(p, static_cast<uint32_t>(iova >> 32));
    if (!section(static_cast<uint32_t>(SectType::gpuaddr), p)) return false;
    if (contents.empty()) return true;
    return section(static_cast<uint32_t>(SectType::buffer_contents), contents);
}

bool RdWriter::cmdstream(uint64_t iova, uint32_t size_bytes) {
    if (size_bytes % 4) return fail("cmdstream size " + std::to_string(size_bytes) + " is not whole dwords");
    std::vector<uint8_t> p;
    put32(p, static_cast<uint32_t>(iova));
    put32(p, size_bytes / 4);   // §9.3: dwords
    put32(p, static_cast<uint32_t>(iova >> 32));
    return section(static_cast<uint32_t>(SectType::cmdstream_addr), p);
}

bool RdWriter::wrbuffer(const WrBuffer& wb) {
    std::vector<uint8_t> p;
    put64(p, wb.iova);
    put64(p, wb.size);
    put64(p, wb.clear ? 1 : 0);
    p.insert(p.end(), wb.name.begin(), wb.name.end());
    p.push_back(0);
    return section(static_cast<uint32_t>(SectType::wrbuffer), p);
}

bool RdWriter::close() {
    if (!gz_ || !gz_->f) return !failed_;
    const int r = gzclose(gz_->f);
    gz_->f = nullptr;
    if (r != Z_OK && !failed_) return fail("close failed (zlib error " + std::to_string(r) + ")");
    return !failed_;
}

Result<uint64_t> write_capture(const std::string& path, const Capture& c) {
    auto created = RdWriter::create(path);
    if (!created) return created.error();
    RdWriter& w = created.value();
    bool ok = w.header(c.gpu_id, c.chip_id);
    for (const Submit& s : c.submits) {
        ok = ok && w.cmd(s.cmd);
        for (const BufferDecl& d : s.decls)
            ok = ok && w.buffer(d.iova, d.size,
                                d.contents ? c.data(*d.contents) : std::span<const uint8_t>{});
        for (const CmdStream& cs : s.cmds) ok = ok && w.cmdstream(cs.iova, cs.size_bytes);
    }
    for (const WrBuffer& wb : c.wrbuffers) ok = ok && w.wrbuffer(wb);
    ok = w.close() && ok;
    if (!ok) return w.error();
    return w.bytes_written();
}

} // namespace fdnc::rd
