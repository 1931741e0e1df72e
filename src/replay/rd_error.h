// Errors of the .rd reader, loader and writer as named values, plus a small result type
// (C++20 has no std::expected).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace fdnc::rd {

enum class RdErrc {
    OpenFailed,        // the file cannot be opened / read at all
    EmptyFile,         // no bytes at all
    TruncatedHeader,   // fewer than 8 bytes left where a section header was expected
    TruncatedPayload,  // the stream ends inside a section's payload
    NegativeSize,      // size field < 0 as s32 (§9.1: "corrupt file")
    OversizedSection,  // size beyond kMaxSectionBytes or beyond the file
    BadPayload,        // a known section whose payload has the wrong size/shape
    GzipError,         // zlib reports corrupt compressed data
    OrphanContents,    // RD_BUFFER_CONTENTS without a preceding RD_GPUADDR
    ContentsOverflow,  // RD_BUFFER_CONTENTS larger than the buffer it is bound to
    WriteFailed,       // the writer could not create or write the output
};

std::string_view rd_errc_name(RdErrc code);

struct RdError {
    RdErrc code{};
    uint64_t offset = 0;   // byte offset in the uncompressed stream
    std::string detail;    // what was expected / found
    // "truncated_payload at offset 1234: ..." - one line for logs and CLI output.
    std::string what() const;
};

template <class T>
class Result {
  public:
    Result(T value) : v_(std::move(value)) {}
    Result(RdError error) : v_(std::move(error)) {}
    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    const RdError& error() const { return std::get<1>(v_); }

  private:
    std::variant<T, RdError> v_;
};

} // namespace fdnc::rd
