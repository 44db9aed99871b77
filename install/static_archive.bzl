# SPDX-License-Identifier: Apache-2.0
"""static_archive: one libNAME.a holding a cc_library and everything it
links from this repository (and its static imports, such as nanopb), for
installing. Bazel keeps one archive per cc_library and links them with
--start-lib; applications outside Bazel need a single archive.

Outputs NAME (the archive) and NAME.linkopts: the link flags the archive
still needs (its deps' linkopts, e.g. -lgrpc -lgpr -lssl -lcrypto), one a
line, for pkg-config's Libs.private.
"""

load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain")

def _static_archive_impl(ctx):
    cc = ctx.attr.dep[CcInfo]
    archives = []
    flags = []
    for li in cc.linking_context.linker_inputs.to_list():
        for f in li.user_link_flags:
            if f not in flags:
                flags.append(f)
        for lib in li.libraries:
            a = lib.pic_static_library or lib.static_library
            if a != None and a not in archives:
                archives.append(a)
    out = ctx.actions.declare_file(ctx.label.name)
    opts = ctx.actions.declare_file(ctx.label.name + ".linkopts")
    # GNU ar's MRI mode keeps members of the same name from different
    # archives (transport's client.o and the SDK's client.o).
    mri = ctx.actions.declare_file(ctx.label.name + ".mri")
    ctx.actions.write(
        mri,
        "CREATE %s\n" % out.path +
        "".join(["ADDLIB %s\n" % a.path for a in archives]) +
        "SAVE\nEND\n",
    )
    ctx.actions.write(opts, "".join([f + "\n" for f in flags]))
    ar = find_cpp_toolchain(ctx).ar_executable
    ctx.actions.run_shell(
        inputs = archives + [mri],
        outputs = [out],
        tools = ctx.files._cc_toolchain,
        command = "rm -f '%s' && '%s' -M < '%s'" % (out.path, ar, mri.path),
        mnemonic = "StaticArchive",
        progress_message = "Archiving %s" % out.short_path,
    )
    return [DefaultInfo(
        files = depset([out, opts]),
        runfiles = ctx.runfiles(files = [out, opts]),
    )]

static_archive = rule(
    implementation = _static_archive_impl,
    attrs = {
        "dep": attr.label(mandatory = True, providers = [CcInfo]),
        "_cc_toolchain": attr.label(
            default = Label("@bazel_tools//tools/cpp:current_cc_toolchain"),
        ),
    },
    toolchains = ["@bazel_tools//tools/cpp:toolchain_type"],
    fragments = ["cpp"],
)
