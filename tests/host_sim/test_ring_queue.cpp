// RingQueue (util/ring_queue.h): FIFO order across wrap-around and growth.
#include <catch2/catch.hpp>

#include <deque>
#include <memory>
#include <random>

#include "util/ring_queue.h"

TEST_CASE("RingQueue keeps FIFO order through wrap-around and growth, like std::deque") {
    fdnc::RingQueue<std::unique_ptr<int>> q;
    std::deque<int> model;
    std::mt19937 rng(3);
    int next = 0;
    for (int step = 0; step < 20000; ++step) {
        // Phases of net growth and net shrink, so the head wraps at several capacities.
        const bool grow = (step / 1000) % 2 == 0;
        if (model.empty() || rng() % 10 < (grow ? 7u : 3u)) {
            q.push_back(std::make_unique<int>(next));
            model.push_back(next++);
        } else {
            REQUIRE(*q.front() == model.front());
            REQUIRE(*q.pop_front() == model.front());
            model.pop_front();
        }
        REQUIRE(q.size() == model.size());
    }
    size_t i = 0;
    bool same = true;
    q.for_each([&](std::unique_ptr<int>& v) { same = same && *v == model[i++]; });
    CHECK(same);
    CHECK(i == model.size());
    q.clear();
    CHECK(q.empty());
}
