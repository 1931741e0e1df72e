// Catch2's implementation, compiled once for every suite binary. Unoptimized on purpose: it is the
// slowest file of the build (minutes under sanitizers at -O2) and its speed does not matter.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "catch_run.h"

int fdnc_catch_run(int argc, char** argv) { return Catch::Session().run(argc, argv); }
