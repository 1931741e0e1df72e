// Fatal-signal backtraces of the process the shim is preloaded into (crash_report.cpp).
#pragma once

namespace fdnc::shim {

void install_crash_report();

} // namespace fdnc::shim
