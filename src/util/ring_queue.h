// RingQueue: a FIFO in one growing array that never frees while it runs.
//
// For queues filled on one thread and drained on another: std::deque allocates a block on the
// producer and frees it on the consumer every few elements, and a free of another thread's
// block takes that thread's malloc arena lock, which stalls the producer if it allocates at that
// moment (the in-process host link's bo_new tail, bench/README.md). Capacity doubles when full
// and stays. Unlike std::deque, push_back may move every element: no reference to one may be
// held across a push (or across an unlock that lets another thread push).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace fdnc {

template <typename T> class RingQueue {
public:
    bool empty() const { return count_ == 0; }
    size_t size() const { return count_; }
    T& front() { return slots_[head_]; }

    void push_back(T v) {
        if (count_ == slots_.size())
            grow();
        slots_[(head_ + count_) & (slots_.size() - 1)] = std::move(v);
        ++count_;
    }
    // The front element, moved out; its slot keeps a moved-from T.
    T pop_front() {
        T v = std::move(slots_[head_]);
        head_ = (head_ + 1) & (slots_.size() - 1);
        --count_;
        return v;
    }
    template <typename F> void for_each(F f) {
        for (size_t i = 0; i < count_; ++i)
            f(slots_[(head_ + i) & (slots_.size() - 1)]);
    }
    void clear() {
        while (count_ > 0)
            pop_front();
    }

private:
    void grow() {
        std::vector<T> bigger(slots_.empty() ? 16 : slots_.size() * 2);
        for (size_t i = 0; i < count_; ++i)
            bigger[i] = std::move(slots_[(head_ + i) & (slots_.size() - 1)]);
        slots_ = std::move(bigger);
        head_ = 0;
    }

    std::vector<T> slots_;  // size is 0 or a power of two
    size_t head_ = 0;
    size_t count_ = 0;
};

}  // namespace fdnc
