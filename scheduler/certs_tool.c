/* SPDX-License-Identifier: Apache-2.0
 *
 * certs_tool.c: the taskgrid-certs command. Makes a cluster CA and one
 * certificate per role (scheduler, worker, client, admin) in a directory,
 * or issues one more certificate from an existing CA there (a worker per
 * host, a client per user). The certificate code is util/certs.c,
 * shared with the SDK's secure temporary cluster.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "taskgrid/status.h"
#include "util/certs.h"

static const char usage[] =
    "usage: taskgrid-certs DIR [--days N] [--hosts H1,H2,...] [--force]\n"
    "       taskgrid-certs DIR --issue ROLE NAME [--days N] [--hosts ...]\n"
    "\n"
    "The first form makes a new cluster CA and a certificate for each role\n"
    "in DIR (which must exist):\n"
    "  ca.pem ca-key.pem          the cluster CA (keep ca-key.pem offline)\n"
    "  scheduler.pem/-key.pem     role scheduler; its names are --hosts\n"
    "  worker.pem/-key.pem        role worker: may join as a worker and\n"
    "                             serve results to other workers (TLS\n"
    "                             name taskgrid-worker)\n"
    "  client.pem/-key.pem        role client: submit, gather, cancel...\n"
    "  admin.pem/-key.pem         role admin: what a client may, and Scale\n"
    "The second form signs one more certificate with DIR/ca.pem and\n"
    "DIR/ca-key.pem and writes DIR/NAME.pem and DIR/NAME-key.pem.\n"
    "\n"
    "  --days N        validity in days (default 365)\n"
    "  --hosts LIST    DNS names and IP addresses clients use to reach the\n"
    "                  scheduler (default: localhost,127.0.0.1,::1 and this\n"
    "                  host's name)\n"
    "  --force         replace existing files\n"
    "\n"
    "Roles are written as a URI SAN taskgrid:role=ROLE and as the OU. Keys\n"
    "are EC P-256, unencrypted, mode 0600.\n";

static int bad(const char *msg, const char *arg)
{
    fprintf(stderr, "taskgrid-certs: %s%s%s\ntry 'taskgrid-certs --help'\n",
            msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (f == NULL)
        return NULL;
    buf = malloc(1u << 20);
    n = buf ? fread(buf, 1, (1u << 20) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* Sign one more certificate with the CA in `dir`. */
static int issue(const char *dir, const char *role, const char *name, int days,
                 const char *hosts, bool force)
{
    char path[PATH_MAX], *ca_cert, *ca_key, *cert = NULL, *key = NULL;
    char names[4096];
    tg__certs_ca *ca = NULL;
    tg__certs_leaf leaf = {0};
    int rc;

    if (strchr(name, '/') != NULL || name[0] == '.' || name[0] == '\0')
        return bad("NAME must be a plain file name", name);
    snprintf(path, sizeof(path), "%s/" TG__CERTS_CA_FILE, dir);
    ca_cert = slurp(path);
    snprintf(path, sizeof(path), "%s/" TG__CERTS_CA_KEY_FILE, dir);
    ca_key = slurp(path);
    if (ca_cert == NULL || ca_key == NULL) {
        fprintf(stderr,
                "taskgrid-certs: cannot read %s/ca.pem and %s/ca-key.pem: "
                "%s\n",
                dir, dir, strerror(errno));
        free(ca_cert);
        free(ca_key);
        return 1;
    }
    rc = tg__certs_ca_load(&ca, ca_cert, ca_key);
    free(ca_cert);
    free(ca_key);
    if (rc != TG_OK)
        goto fail;
    leaf.cn = name;
    leaf.role = role;
    leaf.server = strcmp(role, "scheduler") == 0 || strcmp(role, "worker") == 0;
    if (strcmp(role, "worker") == 0) {
        /* The name other workers verify when they fetch from it. */
        snprintf(names, sizeof(names), "%s%s%s", TG__CERTS_WORKER_NAME,
                 hosts ? "," : "", hosts ? hosts : "");
        hosts = names;
    }
    leaf.hosts = hosts;
    leaf.validity.not_before_s = -3600;
    leaf.validity.not_after_s = (int64_t)days * 86400;
    if ((rc = tg__certs_issue(ca, &leaf, &cert, &key)) != TG_OK)
        goto fail;
    snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
    if ((rc = tg__certs_write_file(path, cert, 0644, force)) != TG_OK)
        goto fail;
    snprintf(path, sizeof(path), "%s/%s-key.pem", dir, name);
    if ((rc = tg__certs_write_file(path, key, 0600, force)) != TG_OK)
        goto fail;
    printf("wrote %s/%s.pem and %s/%s-key.pem (role %s)\n", dir, name, dir,
           name, role);
    tg__certs_ca_free(ca);
    free(cert);
    free(key);
    return 0;

fail:
    fprintf(stderr, "taskgrid-certs: %s\n", tg_error_last());
    tg__certs_ca_free(ca);
    free(cert);
    free(key);
    return 1;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *hosts = NULL, *role = NULL, *name = NULL;
    tg__certs_dir_opts o = {0};
    bool force = false;
    long days = 365;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--days") == 0 && i + 1 < argc) {
            char *end;
            days = strtol(argv[++i], &end, 10);
            if (*end != '\0' || days < 1 || days > 36500)
                return bad("--days expects 1 to 36500", argv[i]);
        } else if (strcmp(a, "--hosts") == 0 && i + 1 < argc) {
            hosts = argv[++i];
        } else if (strcmp(a, "--force") == 0) {
            force = true;
        } else if (strcmp(a, "--issue") == 0 && i + 2 < argc) {
            role = argv[++i];
            name = argv[++i];
        } else if (a[0] == '-') {
            return bad("unknown option or missing value", a);
        } else if (dir == NULL) {
            dir = a;
        } else {
            return bad("one directory only", a);
        }
    }
    if (dir == NULL)
        return bad("no directory given", NULL);
    if (role != NULL)
        return issue(dir, role, name, (int)days, hosts, force);
    o.days = (int)days;
    o.hosts = hosts;
    o.write_ca_key = true;
    o.overwrite = force;
    if (tg__certs_write_dir(dir, &o) != TG_OK) {
        fprintf(stderr, "taskgrid-certs: %s\n", tg_error_last());
        return 1;
    }
    printf("wrote a new cluster CA and scheduler, worker, client and admin "
           "certificates to %s\n"
           "  taskgrid-scheduler --listen tls://0.0.0.0:8786 --tls-ca "
           "%s/ca.pem --tls-cert %s/scheduler.pem --tls-key "
           "%s/scheduler-key.pem\n",
           dir, dir, dir, dir);
    return 0;
}
