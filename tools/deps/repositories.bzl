"""Offline third-party repositories for betterconcurrent, built from Debian-installed files.

Nothing here downloads anything. Every repository is assembled from files that
tools/deps/install.sh (also reachable as `make deps`) puts on the machine, mostly
by symlinking them into Bazel's external directory.

Consumers load this file as `@betterconcurrent//tools/deps:repositories.bzl` and call
`betterconcurrent_dependencies()` after declaring any repositories they want to own
themselves: a repository that already exists is left alone.
"""

_INSTALL_HINT = "run tools/deps/install.sh (or make deps) in the betterconcurrent repository"

_RULES_CC_DIR = "/usr/share/bazel/rules/cc"
_RULES_JAVA_DIR = "/usr/share/bazel/rules/java"
_SKYLIB_DIR = "/usr/share/bazel/tools/skylib"
_PLATFORMS_DIR = "/usr/share/bazel/tools/platforms"
_GOOGLETEST_DIR = "/usr/src/googletest"
_BENCHMARK_INCLUDE_DIR = "/usr/include/benchmark"
_BENCHMARK_LIB_DIR = "/usr/lib/x86_64-linux-gnu"
_DEFAULT_DEPS_DIR = "/opt/betterconcurrent-deps"
_PYTHON_INCLUDE_DIR = "/usr/include/python3.11"
# Debian's pyconfig.h includes <x86_64-linux-gnu/python3.11/pyconfig.h>, relative to this.
_PYTHON_MULTIARCH_INCLUDE_DIR = "/usr/include/x86_64-linux-gnu/python3.11"
_PYBIND11_INCLUDE_DIR = "/usr/include/pybind11"

# Files that mark a workspace root; each generated repository gets its own.
_WORKSPACE_FILES = ["WORKSPACE", "WORKSPACE.bazel", "MODULE.bazel"]

def _require(ctx, path_string, what):
    """Returns ctx.path(path_string), failing with an install hint if it does not exist."""
    path = ctx.path(path_string)
    if not path.exists:
        fail("@{repo}: {what} not found at {path}; {hint}".format(
            repo = ctx.name,
            what = what,
            path = path_string,
            hint = _INSTALL_HINT,
        ))
    return path

def _mirror_tree(ctx, src, replacements = {}):
    """Makes the repository root mirror directory `src` through symlinks.

    `replacements` maps relative file paths to new contents. Directories on the way to
    a replaced file are recreated (their other entries symlinked) so that the original
    under `src` is never touched.
    """
    prefixes = {"": True}
    for rel in replacements:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            prefixes["/".join(parts[:i])] = True

    for rel_dir in prefixes:
        src_dir = src if rel_dir == "" else ctx.path("{}/{}".format(src, rel_dir))
        for entry in src_dir.readdir():
            rel = entry.basename if rel_dir == "" else rel_dir + "/" + entry.basename
            if rel in prefixes or rel in replacements or rel in _WORKSPACE_FILES:
                continue
            ctx.symlink(entry, rel)

    for rel, content in replacements.items():
        ctx.file(rel, content, executable = False)
    ctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(ctx.name), executable = False)

def _replace_or_fail(ctx, text, old, new, file_name):
    if old not in text:
        fail("@{}: cannot patch {}: expected text {!r} not found (unexpected bazel-rules-cc version?)".format(
            ctx.name,
            file_name,
            old,
        ))
    return text.replace(old, new)

# --- rules_cc -----------------------------------------------------------------------------

def _debian_rules_cc_impl(ctx):
    """Debian's rules_cc 0.0.4, patched so it loads under Bazel 4.2.3.

    Two rule definitions use `use_cpp_toolchain` from @bazel_tools, which Bazel 4.2.3 does not
    have. Their copies here use the plain C++ toolchain type instead.
    """
    src = _require(ctx, ctx.attr.path, "rules_cc (Debian package bazel-rules-cc)")
    replacements = {}
    for rel in [
        "cc/private/rules_impl/compiler_flag.bzl",
        "cc/private/rules_impl/cc_flags_supplier.bzl",
    ]:
        text = ctx.read("{}/{}".format(src, rel))
        text = _replace_or_fail(ctx, text, '"find_cpp_toolchain", "use_cpp_toolchain")', '"find_cpp_toolchain")', rel)
        text = _replace_or_fail(ctx, text, "toolchains = use_cpp_toolchain(),", 'toolchains = ["@bazel_tools//tools/cpp:toolchain_type"],', rel)
        if "use_cpp_toolchain" in text:
            fail("@{}: {} still mentions use_cpp_toolchain after patching".format(ctx.name, rel))
        replacements[rel] = text
    _mirror_tree(ctx, src, replacements)

debian_rules_cc = repository_rule(
    implementation = _debian_rules_cc_impl,
    attrs = {"path": attr.string(default = _RULES_CC_DIR)},
    local = True,
    doc = "rules_cc from Debian's bazel-rules-cc, patched for Bazel 4.2.3.",
)

# --- plain mirrors (rules_java, bazel_skylib, platforms, abseil) --------------------------

def _system_directory_impl(ctx):
    path = ctx.attr.path
    if ctx.attr.path_env and ctx.os.environ.get(ctx.attr.path_env):
        path = ctx.os.environ[ctx.attr.path_env] + "/" + ctx.attr.path_env_subdir
    src = _require(ctx, path, ctx.attr.description)
    for marker in ctx.attr.marker_files:
        _require(ctx, path + "/" + marker, ctx.attr.description)
    _mirror_tree(ctx, src)

_system_directory_attrs = {
    "path": attr.string(mandatory = True, doc = "Directory to mirror."),
    "description": attr.string(mandatory = True, doc = "What the directory is, for error messages."),
    "marker_files": attr.string_list(doc = "Files that must exist below `path`."),
    "path_env": attr.string(doc = "If this environment variable is set, use $VAR/<path_env_subdir> instead of `path`."),
    "path_env_subdir": attr.string(),
}

system_directory_repository = repository_rule(
    implementation = _system_directory_impl,
    attrs = _system_directory_attrs,
    local = True,
    doc = "Mirrors an installed directory (which must carry its own BUILD files) as a repository.",
)

# Same rule, but it declares the variable install.sh honours, so changing it refetches.
_deps_directory_repository = repository_rule(
    implementation = _system_directory_impl,
    attrs = _system_directory_attrs,
    local = True,
    environ = ["BETTERCONCURRENT_DEPS"],
)

# --- GoogleTest ---------------------------------------------------------------------------

def _system_source_with_build_file_impl(ctx):
    src = _require(ctx, ctx.attr.path, ctx.attr.description)
    for marker in ctx.attr.marker_files:
        _require(ctx, ctx.attr.path + "/" + marker, ctx.attr.description)
    _mirror_tree(ctx, src, {"BUILD.bazel": ctx.read(ctx.attr.build_file)})

system_source_repository = repository_rule(
    implementation = _system_source_with_build_file_impl,
    attrs = {
        "path": attr.string(mandatory = True),
        "description": attr.string(mandatory = True),
        "marker_files": attr.string_list(),
        "build_file": attr.label(mandatory = True, allow_single_file = True),
    },
    local = True,
    doc = "Mirrors installed sources that have no Bazel BUILD file, adding `build_file`.",
)

# --- Google Benchmark (prebuilt) ----------------------------------------------------------

def _debian_benchmark_impl(ctx):
    what = "Google Benchmark (Debian package libbenchmark-dev)"
    include_dir = _require(ctx, ctx.attr.include_dir, what)
    _require(ctx, ctx.attr.include_dir + "/benchmark.h", what)
    ctx.symlink(include_dir, "include/benchmark")
    for lib in ["libbenchmark.so", "libbenchmark_main.a"]:
        ctx.symlink(_require(ctx, ctx.attr.lib_dir + "/" + lib, what), "lib/" + lib)
    ctx.file("BUILD.bazel", ctx.read(ctx.attr.build_file), executable = False)
    ctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(ctx.name), executable = False)

debian_benchmark_repository = repository_rule(
    implementation = _debian_benchmark_impl,
    attrs = {
        "include_dir": attr.string(default = _BENCHMARK_INCLUDE_DIR),
        "lib_dir": attr.string(default = _BENCHMARK_LIB_DIR),
        "build_file": attr.label(mandatory = True, allow_single_file = True),
    },
    local = True,
    doc = "Debian's prebuilt Google Benchmark: headers plus libbenchmark.so / libbenchmark_main.a.",
)

# --- Python headers and pybind11 (headers only) ----------------------------------------

def _system_headers_impl(ctx):
    """Symlinks installed header directories into the repository and adds `build_file`."""
    for src, dest in ctx.attr.directories.items():
        ctx.symlink(_require(ctx, src, ctx.attr.description), dest)
    for marker in ctx.attr.marker_files:
        _require(ctx, marker, ctx.attr.description)
    ctx.file("BUILD.bazel", ctx.read(ctx.attr.build_file), executable = False)
    ctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(ctx.name), executable = False)

system_headers_repository = repository_rule(
    implementation = _system_headers_impl,
    attrs = {
        "directories": attr.string_dict(
            mandatory = True,
            doc = "Installed directory -> path inside the repository (symlinked).",
        ),
        "description": attr.string(mandatory = True),
        "marker_files": attr.string_list(doc = "Absolute paths that must exist."),
        "build_file": attr.label(mandatory = True, allow_single_file = True),
    },
    local = True,
    doc = "Installed headers (no library to link) as a repository with a cc_library.",
)

# --- remote_coverage_tools stub -----------------------------------------------------------

_COVERAGE_STUB_BUILD = """\
# Stand-in for Bazel's downloadable coverage tools. `bazel test` in Bazel 4.2.3 resolves
# these labels even without --collect_code_coverage; coverage itself is not supported offline.
package(default_visibility = ["//visibility:public"])

sh_binary(
    name = "coverage_report_generator",
    srcs = ["unsupported.sh"],
)

sh_binary(
    name = "lcov_merger",
    srcs = ["unsupported.sh"],
)
"""

_COVERAGE_STUB_SCRIPT = """\
#!/bin/sh
echo "coverage is not available in the offline betterconcurrent build" >&2
exit 1
"""

def _coverage_tools_stub_impl(ctx):
    ctx.file("WORKSPACE", 'workspace(name = "{}")\n'.format(ctx.name), executable = False)
    ctx.file("BUILD.bazel", _COVERAGE_STUB_BUILD, executable = False)
    ctx.file("unsupported.sh", _COVERAGE_STUB_SCRIPT, executable = True)

coverage_tools_stub_repository = repository_rule(
    implementation = _coverage_tools_stub_impl,
    doc = "Local stub for @remote_coverage_tools.",
)

# --- the macro ----------------------------------------------------------------------------

def _declare(rule, name, **kwargs):
    if native.existing_rule(name) == None:
        rule(name = name, **kwargs)

def betterconcurrent_dependencies():
    """Declares every external repository betterconcurrent needs, unless already declared."""
    _declare(debian_rules_cc, "rules_cc")
    _declare(
        system_directory_repository,
        "rules_java",
        path = _RULES_JAVA_DIR,
        description = "rules_java (Debian package bazel-rules-java)",
        marker_files = ["java/defs.bzl"],
    )
    _declare(
        system_directory_repository,
        "bazel_skylib",
        path = _SKYLIB_DIR,
        description = "bazel_skylib (Debian package bazel-skylib)",
        marker_files = ["lib/selects.bzl"],
    )
    _declare(
        system_directory_repository,
        "platforms",
        path = _PLATFORMS_DIR,
        description = "platforms (Debian package bazel-platforms)",
        marker_files = ["os/BUILD"],
    )
    _declare(
        _deps_directory_repository,
        "com_google_absl",
        path = _DEFAULT_DEPS_DIR + "/abseil",
        path_env = "BETTERCONCURRENT_DEPS",
        path_env_subdir = "abseil",
        description = "Abseil source (Debian source package abseil, unpacked by install.sh)",
        marker_files = ["absl/base/BUILD.bazel"],
    )
    _declare(
        system_source_repository,
        "com_google_googletest",
        path = _GOOGLETEST_DIR,
        description = "GoogleTest sources (Debian package googletest)",
        marker_files = ["googletest/src/gtest-all.cc", "googlemock/src/gmock-all.cc"],
        build_file = Label("//tools/deps:googletest.BUILD"),
    )
    _declare(
        debian_benchmark_repository,
        "com_github_google_benchmark",
        build_file = Label("//tools/deps:benchmark.BUILD"),
    )
    _declare(
        system_headers_repository,
        "python_headers",
        directories = {
            _PYTHON_INCLUDE_DIR: "include",
            _PYTHON_MULTIARCH_INCLUDE_DIR: "multiarch/x86_64-linux-gnu/python3.11",
        },
        description = "Python 3.11 headers (Debian package python3-dev)",
        marker_files = [_PYTHON_INCLUDE_DIR + "/Python.h", _PYTHON_MULTIARCH_INCLUDE_DIR + "/pyconfig.h"],
        build_file = Label("//tools/deps:python_headers.BUILD"),
    )
    _declare(
        system_headers_repository,
        "pybind11",
        directories = {_PYBIND11_INCLUDE_DIR: "include/pybind11"},
        description = "pybind11 headers (Debian package pybind11-dev)",
        marker_files = [_PYBIND11_INCLUDE_DIR + "/pybind11.h"],
        build_file = Label("//tools/deps:pybind11.BUILD"),
    )
    _declare(coverage_tools_stub_repository, "remote_coverage_tools")
