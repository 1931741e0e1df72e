#include "replay/capture_loader.h"

#include <cstring>

#include "replay/rd_reader.h"

namespace fdnc::rd {

namespace {

uint32_t le32(const uint8_t* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint64_t le64(const uint8_t* p) { return uint64_t{le32(p)} | uint64_t{le32(p + 4)} << 32; }

struct Addr {
    uint64_t iova;
    uint32_t size;   // bytes for GPUADDR, dwords for CMDSTREAM_ADDR
};

// §9.3: 8 bytes = {iova, size}; 12 = {iova_lo, size, iova_hi}; the high word is present iff
// the payload is longer than 8 bytes (Mesa's parser rule), so 12+ is accepted.
bool parse_addr(std::span<const uint8_t> p, Addr& out) {
    if (p.size() == kAddr32Bytes) {
        out = Addr{le32(p.data()), le32(p.data() + 4)};
        return true;
    }
    if (p.size() >= kAddr64Bytes) {
        out = Addr{uint64_t{le32(p.data())} | uint64_t{le32(p.data() + 8)} << 32, le32(p.data() + 4)};
        return true;
    }
    return false;
}

std::string text_of(std::span<const uint8_t> p) {
    // The kernel pads RD_CMD to 4 bytes and the padding is not always zero: stop at the NUL.
    // An empty section has no data pointer, and memchr(nullptr, ...) is undefined even for 0 bytes.
    if (p.empty()) return {};
    const void* nul = std::memchr(p.data(), 0, p.size());
    const size_t n = nul ? static_cast<size_t>(static_cast<const uint8_t*>(nul) - p.data()) : p.size();
    return std::string(reinterpret_cast<const char*>(p.data()), n);
}

RdError bad(const SectionHeader& h, std::string what) {
    return RdError{RdErrc::BadPayload, h.offset,
                   std::string(sect_type_name(h.type)) + " with " + std::to_string(h.size) +
                       "-byte payload: " + std::move(what)};
}

} // namespace

Result<Capture> load_capture(const std::string& path, const LoadOptions& opts) {
    auto opened = RdReader::open(path);
    if (!opened) return opened.error();
    RdReader& rd = opened.value();

    CaptureBuilder b;
    b.set_alignment(opts.alignment);
    b.set_compressed(rd.compressed());
    std::vector<uint8_t> payload;
    SectionHeader h;
    for (;;) {
        const RdReader::Next n = rd.next_header(h);
        if (n == RdReader::Next::End) break;
        if (n == RdReader::Next::Error) return rd.error();

        const auto type = static_cast<SectType>(h.type);
        if (type == SectType::buffer_contents) {
            // Check the binding before reading, so a bad file costs no allocation.
            const auto bound = b.pending_decl_size();
            if (!bound)
                return RdError{RdErrc::OrphanContents, h.offset,
                               "RD_BUFFER_CONTENTS without a preceding RD_GPUADDR"};
            if (h.size > *bound)
                return RdError{RdErrc::ContentsOverflow, h.offset,
                               "RD_BUFFER_CONTENTS of " + std::to_string(h.size) +
                                   " bytes for a buffer declared with " + std::to_string(*bound) +
                                   " bytes"};
            const uint64_t off = b.store().size();
            if (!rd.read_payload(b.store())) return rd.error();   // straight into the store
            if (!b.contents_in_store(off, h.size))
                return RdError{RdErrc::OrphanContents, h.offset, b.last_problem()};
            continue;
        }
        if (!sect_type_is_known(h.type)) {
            b.skipped(h.type);
            continue;   // next_header skips the payload
        }

        payload.clear();
        if (!rd.read_payload(payload)) return rd.error();
        const std::span<const uint8_t> p(payload);
        switch (type) {
        case SectType::gpu_id:
            if (p.size() < 4) return bad(h, "expected a 4-byte gpu id");
            b.set_gpu_id(le32(p.data()));
            break;
        case SectType::chip_id:
            if (p.size() != 8) return bad(h, "expected an 8-byte chip id (§9.2)");
            b.set_chip_id(le64(p.data()));
            break;
        case SectType::cmd:
            b.cmd_text(text_of(p));
            break;
        case SectType::gpuaddr: {
            Addr a{};
            if (!parse_addr(p, a)) return bad(h, "expected 8 or 12 bytes (iova, size[, iova_hi])");
            if (a.iova + a.size < a.iova) return bad(h, "buffer wraps past the end of the address space");
            b.gpuaddr(a.iova, a.size, h.offset);
            break;
        }
        case SectType::cmdstream_addr: {
            Addr a{};
            if (!parse_addr(p, a)) return bad(h, "expected 8 or 12 bytes (iova, dwords[, iova_hi])");
            if (a.size > UINT32_MAX / 4) return bad(h, "cmdstream of " + std::to_string(a.size) + " dwords");
            const uint32_t bytes = a.size * 4;
            if (a.iova + bytes < a.iova) return bad(h, "cmdstream wraps past the end of the address space");
            b.cmdstream(a.iova, bytes, h.offset);
            break;
        }
        case SectType::wrbuffer: {
            if (p.size() < kWrBufferFixedBytes) return bad(h, "expected at least 24 bytes");
            WrBuffer w{le64(p.data()), le64(p.data() + 8), le64(p.data() + 16) != 0,
                       text_of(p.subspan(kWrBufferFixedBytes))};
            b.wrbuffer(std::move(w));
            break;
        }
        default:
            break;
        }
    }
    b.add_filler_pairs(rd.filler_pairs());
    return std::move(b).finish();
}

} // namespace fdnc::rd
