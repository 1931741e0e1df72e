#include "replay/rd_reader.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

namespace fdnc::rd {

namespace {
// Payloads grow by at most this much per read, so a lying size field on a short gzip stream
// costs one chunk of memory, not the claimed size.
constexpr size_t kReadChunk = size_t{16} << 20;

uint32_t le32(const uint8_t* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
} // namespace

struct RdReader::Gz {
    gzFile f = nullptr;
    ~Gz() {
        if (f) gzclose(f);
    }
};

RdReader::RdReader(RdReader&&) noexcept = default;
RdReader& RdReader::operator=(RdReader&&) noexcept = default;
RdReader::~RdReader() = default;

Result<RdReader> RdReader::open(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return RdError{RdErrc::OpenFailed, 0, path + ": " + std::strerror(errno)};
    if (!S_ISREG(st.st_mode)) return RdError{RdErrc::OpenFailed, 0, path + ": not a regular file"};

    uint8_t magic[2] = {};
    size_t magic_len = 0;
    if (FILE* f = std::fopen(path.c_str(), "rb")) {
        magic_len = std::fread(magic, 1, sizeof magic, f);
        std::fclose(f);
    } else {
        return RdError{RdErrc::OpenFailed, 0, path + ": " + std::strerror(errno)};
    }

    RdReader r;
    r.file_size_ = static_cast<uint64_t>(st.st_size);
    // RFC 1952 magic; anything else is read as a plain .rd stream (§9.1: readers accept both).
    r.compressed_ = magic_len == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    r.gz_ = std::make_unique<Gz>();
    r.gz_->f = gzopen(path.c_str(), "rb");
    if (!r.gz_->f) return RdError{RdErrc::OpenFailed, 0, path + ": gzopen failed"};
    gzbuffer(r.gz_->f, 128 * 1024);
    return r;
}

RdReader::Next RdReader::fail(RdErrc code, uint64_t offset, std::string detail) {
    failed_ = true;
    error_ = RdError{code, offset, std::move(detail)};
    pending_ = 0;
    return Next::Error;
}

// Reads up to n bytes; a short count means end of stream or a zlib error (then failed_ is set).
size_t RdReader::read_some(uint8_t* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
        const unsigned want = static_cast<unsigned>(std::min<size_t>(n - got, INT_MAX / 2));
        const int r = gzread(gz_->f, dst + got, want);
        if (r < 0) break;
        if (r == 0) break;
        got += static_cast<size_t>(r);
    }
    offset_ += got;
    if (got < n) {
        int zerr = Z_OK;
        const char* msg = gzerror(gz_->f, &zerr);
        // Z_BUF_ERROR = zlib's "unexpected end of file" for a cut-off gzip member: that is a
        // truncation, reported by the caller with what it expected.
        if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
            fail(RdErrc::GzipError, offset_,
                 std::string("corrupt gzip data: ") + (msg ? msg : "unknown zlib error"));
        }
    }
    return got;
}

RdReader::Next RdReader::next_header(SectionHeader& out) {
    if (failed_) return Next::Error;
    if (pending_ && !skip_payload()) return Next::Error;

    for (;;) {
        const uint64_t at = offset_;
        uint8_t hdr[kSectionHeaderBytes];
        const size_t got = read_some(hdr, sizeof hdr);
        if (failed_) return Next::Error;
        if (got == 0) {
            if (!seen_any_)
                return fail(RdErrc::EmptyFile, at,
                            compressed_ ? "gzip stream decompresses to no bytes" : "file has no bytes");
            return Next::End;
        }
        seen_any_ = true;
        if (got < sizeof hdr)
            return fail(RdErrc::TruncatedHeader, at,
                        "expected an 8-byte section header, the stream ends after " +
                            std::to_string(got) + " byte(s)");
        const uint32_t type = le32(hdr);
        const uint32_t size = le32(hdr + 4);
        if (type == kFillerWord && size == kFillerWord) {
            ++filler_pairs_;
            continue;
        }
        const std::string what = sect_type_name(type).empty()
                                     ? "section type " + std::to_string(type)
                                     : std::string(sect_type_name(type));
        if (static_cast<int32_t>(size) < 0)
            return fail(RdErrc::NegativeSize, at,
                        what + " has negative size " + std::to_string(static_cast<int32_t>(size)) +
                            " (corrupt file)");
        if (size > kMaxSectionBytes)
            return fail(RdErrc::OversizedSection, at,
                        what + " claims " + std::to_string(size) + " bytes, limit is " +
                            std::to_string(kMaxSectionBytes));
        if (!compressed_ && offset_ + size > file_size_)
            return fail(RdErrc::TruncatedPayload, at,
                        what + " declares " + std::to_string(size) + " payload bytes, only " +
                            std::to_string(file_size_ - offset_) + " remain in the file");
        cur_ = SectionHeader{type, size, at};
        pending_ = size;
        out = cur_;
        return Next::Section;
    }
}

bool RdReader::read_payload(std::vector<uint8_t>& dst) {
    if (failed_) return false;
    while (pending_) {
        const size_t step = static_cast<size_t>(std::min<uint64_t>(pending_, kReadChunk));
        const size_t base = dst.size();
        dst.resize(base + step);
        const size_t got = read_some(dst.data() + base, step);
        dst.resize(base + got);
        pending_ -= got;
        if (failed_) return false;
        if (got < step) {
            const uint64_t have = cur_.size - pending_;
            fail(RdErrc::TruncatedPayload, cur_.offset,
                 std::string(sect_type_name(cur_.type).empty() ? "section" : sect_type_name(cur_.type)) +
                     " (type " + std::to_string(cur_.type) + ") declares " + std::to_string(cur_.size) +
                     " payload bytes, the stream ends after " + std::to_string(have));
            return false;
        }
    }
    return true;
}

bool RdReader::skip_payload() {
    uint8_t buf[64 * 1024];
    while (pending_) {
        const size_t step = static_cast<size_t>(std::min<uint64_t>(pending_, sizeof buf));
        const size_t got = read_some(buf, step);
        pending_ -= got;
        if (failed_) return false;
        if (got < step) {
            fail(RdErrc::TruncatedPayload, cur_.offset,
                 "section type " + std::to_string(cur_.type) + " declares " + std::to_string(cur_.size) +
                     " payload bytes, the stream ends after " + std::to_string(cur_.size - pending_));
            return false;
        }
    }
    return true;
}

RdReader::Next RdReader::next(Section& out) {
    const Next n = next_header(out.header);
    if (n != Next::Section) return n;
    scratch_.clear();
    if (!read_payload(scratch_)) return Next::Error;
    out.payload = std::span<const uint8_t>(scratch_.data(), scratch_.size());
    return Next::Section;
}

} // namespace fdnc::rd
