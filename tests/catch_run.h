// Runs the Catch2 session (tests/catch_impl.cpp): Catch::Session is only declared where its
// implementation is compiled, so mains call this instead.
#pragma once

int fdnc_catch_run(int argc, char** argv);
