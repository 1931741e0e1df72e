// The host side's one entry point into a ccmd stream: a validating walker that refuses, with a
// named error and without reading out of bounds, any malformed record (PROTOCOL.md H1-H5, §5.4-5.5).
// It validates framing and the size relations inside each record; semantics (ids, iovas, ...) are
// the host's business.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "msm_ccmd.h"

namespace fdnc {

enum class DecodeError {
    None,
    BufferUnaligned,     // H1: stream length not a multiple of 4
    TrailingBytes,       // H3: fewer than 16 bytes left after the last record
    LenTooShort,         // H2: hdr.len < 16
    LenUnaligned,        // H2: hdr.len % 4 != 0
    LenPastEnd,          // H2: hdr.len larger than what remains
    RspOffUnaligned,     // H2: rsp_off % 4 != 0
    RspOffOutOfRange,    // R2: the response does not fit in the response area
    UnknownCmd,          // H4
    PayloadSizeMismatch, // a variable payload's declared size disagrees with hdr.len
    IoctlNotAllowed,     // §5.5: IOCTL_SIMPLE outside the allow-list or with a bad size
    UploadPadNonZero,    // GEM_UPLOAD.pad != 0
};

const char* decode_error_name(DecodeError e);

// One validated record. `bytes` views the stream (hdr.len bytes); use copy() to get a private,
// zero-extended copy of the fixed struct (H5) before acting on it.
struct Ccmd {
    uint32_t cmd = 0;
    uint32_t seqno = 0;
    uint32_t rsp_off = 0;
    uint32_t rsp_size = 0; // bytes of the response this record produces (0 = none)
    size_t offset = 0;     // of the record in the stream
    std::span<const uint8_t> bytes;

    template <class Req> Req copy() const {
        Req r{};
        std::memcpy(&r, bytes.data(), bytes.size() < sizeof(Req) ? bytes.size() : sizeof(Req));
        return r;
    }
    // Bytes after the fixed struct of this command (payload, bo/cmd tables).
    std::span<const uint8_t> tail() const;
};

// Bytes of the response a request produces, from its validated fixed part; 0 if none.
uint32_t ccmd_response_size(const Ccmd& c);

class CcmdDecoder {
public:
    // rsp_area_size: bytes of the shared page's response area (0 = no shared page yet: commands
    // with a response are refused with RspOffOutOfRange, like H8's -ENOMEM).
    CcmdDecoder(std::span<const uint8_t> stream, uint32_t rsp_area_size);

    // Validates and returns the next record. False at the end of the stream or on error; check
    // error() to tell which. After an error, next() keeps returning false (H6: rest aborted).
    bool next(Ccmd* out);
    DecodeError error() const { return error_; }
    size_t error_offset() const { return error_offset_; }
    size_t offset() const { return offset_; }

private:
    DecodeError fail(DecodeError e);

    std::span<const uint8_t> stream_;
    uint32_t rsp_area_size_;
    size_t offset_ = 0;
    DecodeError error_ = DecodeError::None;
    size_t error_offset_ = 0;
};

// Whole-stream helper for tests and fuzzers: all records up to the first error.
struct DecodedStream {
    std::vector<Ccmd> records;
    DecodeError error = DecodeError::None;
    size_t error_offset = 0;
};
DecodedStream decode_all(std::span<const uint8_t> stream, uint32_t rsp_area_size);

} // namespace fdnc
