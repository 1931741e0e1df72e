// The plain main shared by the suite binaries (the guest suite has its own).
#include "catch_run.h"

int main(int argc, char** argv) { return fdnc_catch_run(argc, argv); }
