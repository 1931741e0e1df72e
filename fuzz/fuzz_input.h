// FuzzInput: reads little-endian fields off the fuzzer's byte string; past the end every read is
// 0 / empty, so a harness never needs a length check of its own.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace fdnc::fuzz {

class FuzzInput {
public:
    FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

    bool empty() const { return pos_ >= size_; }
    size_t remaining() const { return size_ - pos_; }

    template <class T> T get() {
        T v{};
        const size_t n = std::min(sizeof v, remaining());
        if (n) std::memcpy(&v, data_ + pos_, n);
        pos_ += n;
        return v;
    }
    uint8_t u8() { return get<uint8_t>(); }
    uint16_t u16() { return get<uint16_t>(); }
    uint32_t u32() { return get<uint32_t>(); }
    uint64_t u64() { return get<uint64_t>(); }

    std::span<const uint8_t> bytes(size_t n) {
        n = std::min(n, remaining());
        std::span<const uint8_t> s(data_ + pos_, n);
        pos_ += n;
        return s;
    }
    std::span<const uint8_t> rest() { return bytes(remaining()); }

private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

} // namespace fdnc::fuzz
