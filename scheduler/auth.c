/* SPDX-License-Identifier: Apache-2.0
 *
 * auth.c: the scheduler's access policy (see auth.h). Why these roles:
 *   - worker: opens WorkerLink, and is also a full client, because a task
 *     may submit and gather nested work through the worker-side client,
 *     which reuses the worker's own credentials (a worker holds one
 *     identity, like a Dask worker's single Security object). It may not
 *     Scale: a compromised worker must not resize the cluster.
 *   - client: Submit, Gather, Annotate, Cancel, Release, Status,
 *     Replicate, Watch, Coordinate (a task shares primitives with other
 *     tasks and clients through its worker's credentials, so workers get
 *     it too).
 *   - admin: everything a client may do, plus Scale and Retire. Not
 *     WorkerLink: only worker certificates join as workers, so no other
 *     identity can receive tasks (and their inputs) or forge results.
 *   - scheduler: the scheduler's own server certificate; as a client it
 *     gets only Health (it has no business calling a scheduler).
 *   - Health: any peer the TLS handshake admitted (signed by the cluster
 *     CA), so standard probes work with any cluster certificate.
 *   - Server reflection: any admitted peer too, as Health. It tells only
 *     the protocol (the published .proto files: services, methods,
 *     messages), never cluster state, tasks or data, so it needs no
 *     trust beyond the handshake; and grpcurl or another stock tool run
 *     by an operator should work with whatever cluster certificate is at
 *     hand.
 * Depends on libc only.
 */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "methods.h"

#define CLIENTS (TGS_ROLE_CLIENT | TGS_ROLE_WORKER | TGS_ROLE_ADMIN)

static const struct {
    const char *method;
    unsigned roles;
} policy[] = {
    {TG_METHOD_SUBMIT, CLIENTS},
    {TG_METHOD_GATHER, CLIENTS},
    {TG_METHOD_ANNOTATE, CLIENTS},
    {TG_METHOD_CANCEL, CLIENTS},
    {TG_METHOD_RELEASE, CLIENTS},
    {TG_METHOD_STATUS, CLIENTS},
    {TG_METHOD_REPLICATE, CLIENTS},
    {TG_METHOD_WATCH, CLIENTS},
    {TG_METHOD_COORDINATE, CLIENTS},
    {TG_METHOD_SET_LOG_LEVEL, TGS_ROLE_ADMIN},
    {TG_METHOD_SCALE, TGS_ROLE_ADMIN},
    {TG_METHOD_RETIRE, TGS_ROLE_ADMIN},
    {TG_METHOD_CONNECT, TGS_ROLE_WORKER},
    {TG_METHOD_HEALTH_CHECK, TGS_ROLE_ANY},
    {TG_METHOD_HEALTH_WATCH, TGS_ROLE_ANY},
    {TG_METHOD_REFLECTION, TGS_ROLE_ANY},
    {TG_METHOD_REFLECTION_V1ALPHA, TGS_ROLE_ANY},
};

static const struct {
    const char *name;
    unsigned bit;
} role_names[] = {
    {"scheduler", TGS_ROLE_SCHEDULER},
    {"worker", TGS_ROLE_WORKER},
    {"client", TGS_ROLE_CLIENT},
    {"admin", TGS_ROLE_ADMIN},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

unsigned tgs_auth_role_bit(const char *role)
{
    for (size_t i = 0; role != NULL && i < COUNT(role_names); i++)
        if (strcmp(role, role_names[i].name) == 0)
            return role_names[i].bit;
    return 0;
}

unsigned tgs_auth_method_roles(const char *method)
{
    for (size_t i = 0; method != NULL && i < COUNT(policy); i++)
        if (strcmp(method, policy[i].method) == 0)
            return policy[i].roles;
    return 0;
}

bool tgs_auth_allows(unsigned roles, const char *role)
{
    if (roles & TGS_ROLE_ANY)
        return true;
    return (roles & tgs_auth_role_bit(role)) != 0;
}

void tgs_auth_refusal(const char *method, unsigned roles, const char *role,
                      char *buf, size_t len)
{
    const char *short_name = method ? method : "?";
    const char *dot, *slash;
    char need[128] = "";
    size_t n = 0, k = 0, count = 0;

    /* TG_METHOD_CONNECT -> "WorkerLink/Connect" */
    if (short_name[0] == '/')
        short_name++;
    slash = strchr(short_name, '/');
    if (slash != NULL &&
        (dot = memrchr(short_name, '.', (size_t)(slash - short_name))) != NULL)
        short_name = dot + 1;
    for (size_t i = 0; i < COUNT(role_names); i++)
        count += (roles & role_names[i].bit) != 0;
    for (size_t i = 0; i < COUNT(role_names); i++) {
        if (!(roles & role_names[i].bit))
            continue;
        k++;
        n += (size_t)snprintf(need + n, sizeof(need) - n, "%s'%s'",
                              k == 1       ? ""
                              : k == count ? " or "
                                           : ", ",
                              role_names[i].name);
        if (n >= sizeof(need))
            break;
    }
    if (count == 0)
        snprintf(need, sizeof(need), "%s", "a role no certificate has");
    if (role == NULL || role[0] == '\0')
        snprintf(buf, len,
                 "method %s needs role %s (this certificate has no taskgrid "
                 "role: neither a URI SAN taskgrid:role=NAME nor an OU)",
                 short_name, need);
    else
        snprintf(buf, len,
                 "method %s needs role %s (this certificate has role '%s')",
                 short_name, need, role);
}
