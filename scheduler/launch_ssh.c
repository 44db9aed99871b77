/* SPDX-License-Identifier: Apache-2.0
 *
 * launch_ssh.c: the ssh launcher backend (launch.h). Not written yet: the
 * launcher refuses to start, saying so.
 */
#include "launch.h"
#include "taskgrid/status.h"
#include "util/error.h"

static int ssh_init(tgs_launcher *l, const tgs_launcher_opts *o, void **impl)
{
    (void)l;
    (void)o;
    (void)impl;
    return tg__error_set(TG_EINVAL, "--launcher ssh is not available yet");
}

const tgs_launch_ops tgs__launch_ssh = {
    .kind = "ssh",
    .init = ssh_init,
};
