// The scripted scenarios: free an iova only after the submits using it retired.
#include <catch2/catch.hpp>

#include "guest_fixture.h"

using namespace fdnc;
using namespace fdnc::host;
using namespace fdnc::host::test;
using namespace fdnc::wire;

TEST_CASE("Scenario: GEM_NEW, blob, SUBMIT, retire, SET_IOVA 0, then another object reuses the iova with no fault") {
    Guest g(manual_config(KernelEra::Classic));
    uint32_t q = g.queue(0);
    uint32_t a = g.new_bo(kGva, 0x10000);
    REQUIRE(a != 0);
    REQUIRE(g.submit(q, 1, {{a, kGva}}) == 0);
    REQUIRE(g.host.context_create_fence(g.ctx, 1, 1) == 0);
    g.host.retire_all();
    REQUIRE(g.retired_count() == 1);
    REQUIRE(g.send(cc::gem_set_iova(a, 0)) == 0);
    g.host.resource_unref(g.ctx, a);
    uint32_t b = g.new_bo(kGva, 0x10000);
    REQUIRE(b != 0);
    REQUIRE(g.submit(q, 2, {{b, kGva}}) == 0);
    REQUIRE(g.host.context_create_fence(g.ctx, 1, 2) == 0);
    g.host.retire_all();
    CHECK(g.async_error() == 0);
    CHECK(g.page()->global_faults == 0);
    CHECK(g.host.global_faults() == 0);
    CHECK_FALSE(g.host.mappings_overlap(g.ctx));
}

TEST_CASE("Scenario: SET_IOVA 0 sent before retire is -EBUSY on the classic kernel, so the guest must wait for retire") {
    Guest g(manual_config(KernelEra::Classic));
    uint32_t q = g.queue(0);
    uint32_t a = g.new_bo(kGva, 0x10000);
    REQUIRE(g.submit(q, 1, {{a, kGva}}) == 0);
    REQUIRE(g.host.context_create_fence(g.ctx, 1, 1) == 0);
    // Wrong order: clear while the submit runs. The kernel refuses (6a): async_error grows and the
    // range stays mapped, so the iova cannot be reused yet.
    REQUIRE(g.send(cc::gem_set_iova(a, 0)) == 0);
    CHECK(g.async_error() == 1);
    CHECK(g.host.mappings(g.ctx).size() == 1);
    CHECK(g.new_bo(kGva, 0x10000) == 0); // reuse fails: -ENOSPC inside GEM_NEW, async_error again
    CHECK(g.async_error() == 2);
    // Right order: wait for the fence, then clear; now the range is free and nothing faulted.
    g.host.retire_all();
    REQUIRE(g.retired_count() == 1);
    REQUIRE(g.send(cc::gem_set_iova(a, 0)) == 0);
    CHECK(g.async_error() == 2);
    CHECK(g.new_bo(kGva, 0x10000) != 0);
    CHECK(g.host.global_faults() == 0);
}

TEST_CASE("Scenario: on a kernel without vma tracking the early clear succeeds and the GPU faults") {
    Guest g(manual_config(KernelEra::NoVmaTracking));
    uint32_t q = g.queue(0);
    uint32_t a = g.new_bo(kGva, 0x10000);
    REQUIRE(g.submit(q, 1, {{a, kGva}}) == 0);
    REQUIRE(g.host.context_create_fence(g.ctx, 1, 1) == 0);
    REQUIRE(g.send(cc::gem_set_iova(a, 0)) == 0);
    CHECK(g.async_error() == 0);
    uint32_t b = g.new_bo(kGva, 0x10000); // the stale range is handed out again
    CHECK(b != 0);
    g.host.retire_all();
    CHECK(g.page()->global_faults == 1);
}
