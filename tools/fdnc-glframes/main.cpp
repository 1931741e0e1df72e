// fdnc-glframes: a surfaceless EGL + GLES2 client that creates buffers the way a real frame does.
// Per frame: a new texture (seeded random size, glTexImage2D with data) and a new VBO (seeded
// random size, glBufferData with data), one draw sampling the texture into an FBO, glFinish, then
// both are deleted. It prints GL_RENDERER, frame time p50/p99/max, the glGetError count and, when
// fdnc's drm_shim is preloaded, fdnc's device stats (host waits, ccmds, faults, ...), as a table or
// --json. Exit status: 0 = all frames rendered with no GL error, 1 = an EGL/GL step failed (named
// on stderr), 2 = bad usage.
#include <dlfcn.h>

#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <GLES2/gl2.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#ifndef EGL_PLATFORM_SURFACELESS_MESA
#define EGL_PLATFORM_SURFACELESS_MESA 0x31DD
#endif

namespace {

using json = nlohmann::json;

// The export fdnc's drm_shim offers when it is preloaded (guest backend): a JSON object with the
// device's counters, snprintf semantics (returns the length needed, negative errno on failure).
using DeviceStatsFn = int (*)(char* buf, size_t len);
constexpr const char* kStatsSymbol = "fdnc_drm_shim_device_stats";
// The keys printed in the table, in this order (the JSON carries whatever the shim gives).
const char* const kStatKeys[] = {"bo_news", "bo_new_waits", "host_waits", "ccmds", "submits",
                                 "faults", "async_errors", "bos_live"};

struct Failure {
    std::string step;
    std::string detail;
};

struct Options {
    int frames = 200;
    int warmup = 10;
    uint64_t seed = 1;
    int tex_min = 16, tex_max = 256;
    int quads_min = 1, quads_max = 64;
    int target = 256;
    bool json = false;
};

// xorshift64*: small, seedable, identical on every run.
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed ? seed : 0x9E3779B97F4A7C15ull) {}
    uint64_t next() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return s * 0x2545F4914F6CDD1Dull;
    }
    int range(int lo, int hi) { return lo + int(next() % uint64_t(hi - lo + 1)); }
    float unit() { return float(next() >> 40) / float(1u << 24); }
};

const char* egl_error_name(EGLint e) {
    switch (e) {
    case EGL_SUCCESS: return "EGL_SUCCESS";
    case EGL_NOT_INITIALIZED: return "EGL_NOT_INITIALIZED";
    case EGL_BAD_ACCESS: return "EGL_BAD_ACCESS";
    case EGL_BAD_ALLOC: return "EGL_BAD_ALLOC";
    case EGL_BAD_ATTRIBUTE: return "EGL_BAD_ATTRIBUTE";
    case EGL_BAD_CONFIG: return "EGL_BAD_CONFIG";
    case EGL_BAD_CONTEXT: return "EGL_BAD_CONTEXT";
    case EGL_BAD_CURRENT_SURFACE: return "EGL_BAD_CURRENT_SURFACE";
    case EGL_BAD_DISPLAY: return "EGL_BAD_DISPLAY";
    case EGL_BAD_MATCH: return "EGL_BAD_MATCH";
    case EGL_BAD_NATIVE_PIXMAP: return "EGL_BAD_NATIVE_PIXMAP";
    case EGL_BAD_NATIVE_WINDOW: return "EGL_BAD_NATIVE_WINDOW";
    case EGL_BAD_PARAMETER: return "EGL_BAD_PARAMETER";
    case EGL_BAD_SURFACE: return "EGL_BAD_SURFACE";
    case EGL_CONTEXT_LOST: return "EGL_CONTEXT_LOST";
    default: return "EGL_?";
    }
}

const char* gl_error_name(GLenum e) {
    switch (e) {
    case GL_NO_ERROR: return "GL_NO_ERROR";
    case GL_INVALID_ENUM: return "GL_INVALID_ENUM";
    case GL_INVALID_VALUE: return "GL_INVALID_VALUE";
    case GL_INVALID_OPERATION: return "GL_INVALID_OPERATION";
    case GL_INVALID_FRAMEBUFFER_OPERATION: return "GL_INVALID_FRAMEBUFFER_OPERATION";
    case GL_OUT_OF_MEMORY: return "GL_OUT_OF_MEMORY";
    default: return "GL_?";
    }
}

Failure egl_failure(const std::string& step) {
    const EGLint e = eglGetError();
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%04x", unsigned(e));
    return {step, std::string(egl_error_name(e)) + " (" + hex + ")"};
}

bool has_extension(const char* list, const char* name) {
    if (!list) return false;
    const size_t n = std::strlen(name);
    for (const char* p = list; (p = std::strstr(p, name)) != nullptr; p += n) {
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return true;
    }
    return false;
}

// ---- EGL: surfaceless display, GLES2 context, no surface ---------------------------------------

struct Egl {
    EGLDisplay dpy = EGL_NO_DISPLAY;
    EGLContext ctx = EGL_NO_CONTEXT;
    ~Egl() {
        if (dpy == EGL_NO_DISPLAY) return;
        eglMakeCurrent(dpy, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
        if (ctx != EGL_NO_CONTEXT) eglDestroyContext(dpy, ctx);
        eglTerminate(dpy);
        eglReleaseThread();
    }
};

std::optional<Failure> egl_init(Egl& egl) {
    const char* client_ext = eglQueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS);
    if (!has_extension(client_ext, "EGL_MESA_platform_surfaceless"))
        return Failure{"eglQueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS)",
                       std::string("no EGL_MESA_platform_surfaceless in the client extensions: ") +
                           (client_ext ? client_ext : "(none)")};
    // EGL 1.5's eglGetPlatformDisplay, else EGL_EXT_platform_base's.
    using GetPlatformDisplay = EGLDisplay (*)(EGLenum, void*, const EGLAttrib*);
    using GetPlatformDisplayExt = EGLDisplay (*)(EGLenum, void*, const EGLint*);
    if (auto f = reinterpret_cast<GetPlatformDisplay>(eglGetProcAddress("eglGetPlatformDisplay"))) {
        egl.dpy = f(EGL_PLATFORM_SURFACELESS_MESA, EGL_DEFAULT_DISPLAY, nullptr);
    } else if (auto fx = reinterpret_cast<GetPlatformDisplayExt>(eglGetProcAddress("eglGetPlatformDisplayEXT"))) {
        egl.dpy = fx(EGL_PLATFORM_SURFACELESS_MESA, EGL_DEFAULT_DISPLAY, nullptr);
    } else {
        return Failure{"eglGetProcAddress(eglGetPlatformDisplay[EXT])", "neither entry point exists"};
    }
    if (egl.dpy == EGL_NO_DISPLAY) return egl_failure("eglGetPlatformDisplay(EGL_PLATFORM_SURFACELESS_MESA)");
    EGLint major = 0, minor = 0;
    if (!eglInitialize(egl.dpy, &major, &minor)) {
        const Failure f = egl_failure("eglInitialize");
        egl.dpy = EGL_NO_DISPLAY;
        return f;
    }
    const char* dpy_ext = eglQueryString(egl.dpy, EGL_EXTENSIONS);
    if (!has_extension(dpy_ext, "EGL_KHR_surfaceless_context"))
        return Failure{"eglQueryString(EGL_EXTENSIONS)", "the display has no EGL_KHR_surfaceless_context"};
    if (!eglBindAPI(EGL_OPENGL_ES_API)) return egl_failure("eglBindAPI(EGL_OPENGL_ES_API)");
    EGLConfig config = nullptr;
    if (!has_extension(dpy_ext, "EGL_KHR_no_config_context")) {
        const EGLint attrs[] = {EGL_RENDERABLE_TYPE, EGL_OPENGL_ES2_BIT, EGL_SURFACE_TYPE, EGL_DONT_CARE, EGL_NONE};
        EGLint n = 0;
        if (!eglChooseConfig(egl.dpy, attrs, &config, 1, &n)) return egl_failure("eglChooseConfig");
        if (n < 1) return Failure{"eglChooseConfig", "no config renders GLES2"};
    }
    const EGLint ctx_attrs[] = {EGL_CONTEXT_CLIENT_VERSION, 2, EGL_NONE};
    egl.ctx = eglCreateContext(egl.dpy, config, EGL_NO_CONTEXT, ctx_attrs);
    if (egl.ctx == EGL_NO_CONTEXT) return egl_failure("eglCreateContext(GLES2)");
    if (!eglMakeCurrent(egl.dpy, EGL_NO_SURFACE, EGL_NO_SURFACE, egl.ctx))
        return egl_failure("eglMakeCurrent(EGL_NO_SURFACE)");
    return std::nullopt;
}

// ---- GL: an FBO render target and a textured-quad program -------------------------------------

const char* const kVertexShader = R"(
attribute vec2 a_pos;
attribute vec2 a_uv;
varying vec2 v_uv;
void main() { v_uv = a_uv; gl_Position = vec4(a_pos, 0.0, 1.0); }
)";

const char* const kFragmentShader = R"(
precision mediump float;
uniform sampler2D u_tex;
varying vec2 v_uv;
void main() { gl_FragColor = texture2D(u_tex, v_uv); }
)";

struct Gl {
    GLuint fbo = 0, target = 0, program = 0;
    GLint a_pos = -1, a_uv = -1;
};

std::optional<Failure> check_gl(const std::string& step) {
    const GLenum e = glGetError();
    if (e == GL_NO_ERROR) return std::nullopt;
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%04x", unsigned(e));
    return Failure{step, std::string(gl_error_name(e)) + " (" + hex + ")"};
}

std::optional<Failure> compile(GLenum kind, const char* src, GLuint* out) {
    const GLuint s = glCreateShader(kind);
    glShaderSource(s, 1, &src, nullptr);
    glCompileShader(s);
    GLint ok = 0;
    glGetShaderiv(s, GL_COMPILE_STATUS, &ok);
    if (!ok) {
        char log[1024] = {};
        glGetShaderInfoLog(s, sizeof log, nullptr, log);
        glDeleteShader(s);
        return Failure{kind == GL_VERTEX_SHADER ? "glCompileShader(vertex)" : "glCompileShader(fragment)", log};
    }
    *out = s;
    return std::nullopt;
}

std::optional<Failure> gl_init(Gl& gl, int size) {
    glGenTextures(1, &gl.target);
    glBindTexture(GL_TEXTURE_2D, gl.target);
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, size, size, 0, GL_RGBA, GL_UNSIGNED_BYTE, nullptr);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
    glGenFramebuffers(1, &gl.fbo);
    glBindFramebuffer(GL_FRAMEBUFFER, gl.fbo);
    glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, gl.target, 0);
    const GLenum status = glCheckFramebufferStatus(GL_FRAMEBUFFER);
    if (status != GL_FRAMEBUFFER_COMPLETE) {
        char hex[16];
        std::snprintf(hex, sizeof hex, "0x%04x", unsigned(status));
        return Failure{"glCheckFramebufferStatus", std::string("render target incomplete: ") + hex};
    }
    glViewport(0, 0, size, size);
    GLuint vs = 0, fs = 0;
    if (auto f = compile(GL_VERTEX_SHADER, kVertexShader, &vs)) return f;
    if (auto f = compile(GL_FRAGMENT_SHADER, kFragmentShader, &fs)) return f;
    gl.program = glCreateProgram();
    glAttachShader(gl.program, vs);
    glAttachShader(gl.program, fs);
    glBindAttribLocation(gl.program, 0, "a_pos");
    glBindAttribLocation(gl.program, 1, "a_uv");
    glLinkProgram(gl.program);
    glDeleteShader(vs);
    glDeleteShader(fs);
    GLint ok = 0;
    glGetProgramiv(gl.program, GL_LINK_STATUS, &ok);
    if (!ok) {
        char log[1024] = {};
        glGetProgramInfoLog(gl.program, sizeof log, nullptr, log);
        return Failure{"glLinkProgram", log};
    }
    gl.a_pos = 0;
    gl.a_uv = 1;
    glUseProgram(gl.program);
    glUniform1i(glGetUniformLocation(gl.program, "u_tex"), 0);
    glActiveTexture(GL_TEXTURE0);
    glClearColor(0.f, 0.f, 0.f, 1.f);
    glClear(GL_COLOR_BUFFER_BIT);
    glFinish();
    return check_gl("render target + program set-up");
}

void gl_fini(Gl& gl) {
    if (gl.program) glDeleteProgram(gl.program);
    if (gl.fbo) glDeleteFramebuffers(1, &gl.fbo);
    if (gl.target) glDeleteTextures(1, &gl.target);
}

// One frame's data, generated before the frame's clock starts.
struct FrameData {
    int tex_w = 0, tex_h = 0;
    std::vector<uint8_t> texels;
    std::vector<float> vertices; // x, y, u, v per vertex; 6 vertices per quad
};

void make_frame(Rng& rng, const Options& o, FrameData& d) {
    d.tex_w = rng.range(o.tex_min, o.tex_max);
    d.tex_h = rng.range(o.tex_min, o.tex_max);
    d.texels.resize(size_t(d.tex_w) * size_t(d.tex_h) * 4);
    for (size_t i = 0; i < d.texels.size(); i += 8) {
        const uint64_t v = rng.next();
        std::memcpy(&d.texels[i], &v, std::min<size_t>(8, d.texels.size() - i));
    }
    const int quads = rng.range(o.quads_min, o.quads_max);
    d.vertices.clear();
    d.vertices.reserve(size_t(quads) * 6 * 4);
    for (int q = 0; q < quads; ++q) {
        const float x0 = rng.unit() * 2.f - 1.f, y0 = rng.unit() * 2.f - 1.f;
        const float x1 = std::min(1.f, x0 + 0.05f + rng.unit() * 0.5f), y1 = std::min(1.f, y0 + 0.05f + rng.unit() * 0.5f);
        const float c[6][4] = {{x0, y0, 0, 0}, {x1, y0, 1, 0}, {x1, y1, 1, 1},
                               {x0, y0, 0, 0}, {x1, y1, 1, 1}, {x0, y1, 0, 1}};
        for (const auto& v : c) d.vertices.insert(d.vertices.end(), v, v + 4);
    }
}

// A new texture and a new VBO, one draw, glFinish, both deleted. Returns the first GL error.
GLenum draw_frame(const Gl& gl, const FrameData& d) {
    GLuint tex = 0, vbo = 0;
    glGenTextures(1, &tex);
    glBindTexture(GL_TEXTURE_2D, tex);
    glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
    glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, d.tex_w, d.tex_h, 0, GL_RGBA, GL_UNSIGNED_BYTE, d.texels.data());
    // GLES2 samples a non-power-of-two texture only with clamp-to-edge and no mipmaps.
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
    glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
    glGenBuffers(1, &vbo);
    glBindBuffer(GL_ARRAY_BUFFER, vbo);
    glBufferData(GL_ARRAY_BUFFER, GLsizeiptr(d.vertices.size() * sizeof(float)), d.vertices.data(), GL_STATIC_DRAW);
    glVertexAttribPointer(GLuint(gl.a_pos), 2, GL_FLOAT, GL_FALSE, 4 * sizeof(float), nullptr);
    glVertexAttribPointer(GLuint(gl.a_uv), 2, GL_FLOAT, GL_FALSE, 4 * sizeof(float),
                          reinterpret_cast<const void*>(2 * sizeof(float)));
    glEnableVertexAttribArray(GLuint(gl.a_pos));
    glEnableVertexAttribArray(GLuint(gl.a_uv));
    glDrawArrays(GL_TRIANGLES, 0, GLsizei(d.vertices.size() / 4));
    glFinish();
    glBindBuffer(GL_ARRAY_BUFFER, 0);
    glDeleteBuffers(1, &vbo);
    glBindTexture(GL_TEXTURE_2D, 0);
    glDeleteTextures(1, &tex);
    return glGetError();
}

// ---- fdnc's device stats (from the preloaded shim, if any) ------------------------------------

struct StatsSource {
    DeviceStatsFn fn = nullptr;
    std::string error; // why a snapshot could not be taken
};

StatsSource find_stats() {
    StatsSource s;
    s.fn = reinterpret_cast<DeviceStatsFn>(dlsym(RTLD_DEFAULT, kStatsSymbol));
    if (!s.fn) s.error = "no fdnc device in this process";
    return s;
}

// A snapshot as a JSON object, or null (with the reason in src.error).
json snapshot(StatsSource& src) {
    if (!src.fn) return nullptr;
    std::vector<char> buf(4096);
    int n = src.fn(buf.data(), buf.size());
    if (n >= 0 && size_t(n) >= buf.size()) {
        buf.resize(size_t(n) + 1);
        n = src.fn(buf.data(), buf.size());
    }
    if (n == -ENODEV) { // the shim is there but serves no fdnc device (host backend, node not opened)
        src.error = "no fdnc device in this process (the shim's backend has none)";
        return nullptr;
    }
    if (n < 0) {
        src.error = std::string(kStatsSymbol) + " failed: " + std::strerror(-n);
        return nullptr;
    }
    json j = json::parse(std::string(buf.data(), std::min(size_t(n), buf.size() - 1)), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        src.error = std::string(kStatsSymbol) + " returned no JSON object";
        return nullptr;
    }
    return j;
}

// after - before for every numeric key (the measured frames only).
json delta(const json& before, const json& after) {
    if (!before.is_object() || !after.is_object()) return nullptr;
    json d = json::object();
    for (auto it = after.begin(); it != after.end(); ++it) {
        if (!it.value().is_number_integer() || !before.contains(it.key()) || !before[it.key()].is_number_integer()) continue;
        d[it.key()] = it.value().get<int64_t>() - before[it.key()].get<int64_t>();
    }
    return d;
}

// ---- report -----------------------------------------------------------------------------------

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    // nearest rank
    size_t rank = size_t(p / 100.0 * double(v.size()) + 0.999999);
    rank = std::clamp<size_t>(rank, 1, v.size());
    return v[rank - 1];
}

std::string stat_cell(const json& stats, const char* key) {
    if (!stats.is_object() || !stats.contains(key)) return "-";
    return stats[key].dump();
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"fdnc-glframes: per frame a new texture + VBO, a draw and glFinish on surfaceless EGL/GLES2; "
                 "prints frame times and fdnc's device stats"};
    Options o;
    app.add_option("--frames", o.frames, "measured frames")->check(CLI::Range(1, 10000000));
    app.add_option("--warmup", o.warmup, "frames run first and left out of the statistics")->check(CLI::Range(0, 10000000));
    app.add_option("--seed", o.seed, "PRNG seed for the texture and VBO sizes and contents");
    app.add_option("--tex-min", o.tex_min, "smallest texture side (px)")->check(CLI::Range(1, 4096));
    app.add_option("--tex-max", o.tex_max, "largest texture side (px)")->check(CLI::Range(1, 4096));
    app.add_option("--quads-min", o.quads_min, "fewest quads in a frame's VBO (6 vertices, 96 bytes each)")->check(CLI::Range(1, 100000));
    app.add_option("--quads-max", o.quads_max, "most quads in a frame's VBO")->check(CLI::Range(1, 100000));
    app.add_option("--target", o.target, "side of the FBO render target (RGBA texture)")->check(CLI::Range(1, 4096));
    app.add_flag("--json", o.json, "one JSON object on stdout instead of the table");
    app.footer("Exit status: 0 = all frames rendered with glGetError() == 0, 1 = an EGL/GL step failed, 2 = bad usage.\n"
               "Device stats come from fdnc's drm_shim when it is preloaded (fdnc_drm_shim_device_stats).");
    try {
        app.parse(argc, argv);
        if (o.tex_min > o.tex_max) throw CLI::ValidationError("--tex-min", "is larger than --tex-max");
        if (o.quads_min > o.quads_max) throw CLI::ValidationError("--quads-min", "is larger than --quads-max");
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }

    auto fail = [](const Failure& f) {
        std::fprintf(stderr, "fdnc-glframes: %s failed: %s\n", f.step.c_str(), f.detail.c_str());
        return 1;
    };

    Egl egl;
    if (auto f = egl_init(egl)) return fail(*f);
    Gl gl;
    if (auto f = gl_init(gl, o.target)) return fail(*f);
    auto gl_string = [](GLenum name) {
        const auto* s = reinterpret_cast<const char*>(glGetString(name));
        return std::string(s ? s : "");
    };
    const std::string renderer = gl_string(GL_RENDERER), version = gl_string(GL_VERSION), vendor = gl_string(GL_VENDOR);

    StatsSource stats_src = find_stats();
    json stats_start = nullptr;
    Rng rng(o.seed);
    FrameData data;
    std::vector<double> ms;
    ms.reserve(size_t(o.frames));
    uint64_t gl_errors = 0, tex_bytes = 0, vbo_bytes = 0;
    const int total = o.warmup + o.frames;
    for (int i = 0; i < total; ++i) {
        if (i == o.warmup) stats_start = snapshot(stats_src);
        make_frame(rng, o, data);
        const auto t0 = std::chrono::steady_clock::now();
        const GLenum e = draw_frame(gl, data);
        const auto t1 = std::chrono::steady_clock::now();
        if (e != GL_NO_ERROR) {
            ++gl_errors;
            char detail[96];
            std::snprintf(detail, sizeof detail, "%s (0x%04x)", gl_error_name(e), unsigned(e));
            gl_fini(gl);
            return fail({"frame " + std::to_string(i) + " (glGetError)", detail});
        }
        if (i >= o.warmup) {
            ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
            tex_bytes += data.texels.size();
            vbo_bytes += data.vertices.size() * sizeof(float);
        }
    }
    const json stats_end = snapshot(stats_src);
    const json stats_measured = delta(stats_start, stats_end);
    gl_fini(gl);
    if (auto f = check_gl("teardown")) return fail(*f);

    const double p50 = percentile(ms, 50), p99 = percentile(ms, 99);
    const double max = *std::max_element(ms.begin(), ms.end());
    double sum = 0;
    for (double v : ms) sum += v;
    const double mean = sum / double(ms.size());

    if (o.json) {
        json j;
        j["renderer"] = renderer;
        j["version"] = version;
        j["vendor"] = vendor;
        j["frames"] = o.frames;
        j["warmup"] = o.warmup;
        j["seed"] = o.seed;
        j["frame_ms"] = {{"p50", p50}, {"p99", p99}, {"max", max}, {"mean", mean}};
        j["gl_errors"] = gl_errors;
        j["texture_bytes"] = tex_bytes;
        j["vbo_bytes"] = vbo_bytes;
        j["device_stats"] = stats_end;                 // totals for the process (warm-up included)
        j["device_stats_measured"] = stats_measured;   // the measured frames only
        if (stats_end.is_null()) j["device_stats_note"] = stats_src.error;
        std::cout << j.dump(2) << "\n";
        return 0;
    }
    std::printf("GL_RENDERER   %s\n", renderer.c_str());
    std::printf("GL_VERSION    %s\n", version.c_str());
    std::printf("GL_VENDOR     %s\n", vendor.c_str());
    std::printf("frames        %d measured (+%d warm-up), seed %" PRIu64 ", textures %d..%d px, %d..%d quads\n",
                o.frames, o.warmup, o.seed, o.tex_min, o.tex_max, o.quads_min, o.quads_max);
    std::printf("frame ms      p50 %.3f  p99 %.3f  max %.3f  mean %.3f\n", p50, p99, max, mean);
    std::printf("uploaded      %.1f MB texels, %.1f MB vertices\n", double(tex_bytes) / 1e6, double(vbo_bytes) / 1e6);
    std::printf("gl_errors     %" PRIu64 "\n", gl_errors);
    if (stats_end.is_null()) {
        std::printf("device stats  - (%s)\n", stats_src.error.c_str());
        return 0;
    }
    std::printf("device stats  %-14s %12s %12s %14s\n", "", "total", "measured", "per frame");
    for (const char* key : kStatKeys) {
        std::string per = "-";
        if (stats_measured.is_object() && stats_measured.contains(key) && std::string(key) != "bos_live") {
            char b[32];
            std::snprintf(b, sizeof b, "%.2f", double(stats_measured[key].get<int64_t>()) / double(o.frames));
            per = b;
        }
        std::printf("              %-14s %12s %12s %14s\n", key, stat_cell(stats_end, key).c_str(),
                    stat_cell(stats_measured, key).c_str(), per.c_str());
    }
    for (auto it = stats_end.begin(); it != stats_end.end(); ++it) {
        if (std::find_if(std::begin(kStatKeys), std::end(kStatKeys), [&](const char* k) { return it.key() == k; }) !=
            std::end(kStatKeys))
            continue;
        if (it.value().is_number())
            std::printf("              %-14s %12s %12s\n", it.key().c_str(), it.value().dump().c_str(),
                        stat_cell(stats_measured, it.key().c_str()).c_str());
        else // strings, flags, nested objects: as they are
            std::printf("              %-14s %s\n", it.key().c_str(), it.value().dump().c_str());
    }
    return 0;
}
