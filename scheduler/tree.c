/* SPDX-License-Identifier: Apache-2.0
 *
 * tree.c: Status's view of nested work (taskgrid.v1 KeyStatus.parent,
 * .children, .seceded) for the keys of one StatusRequest. A parent is
 * shown only when the request names it too, so a client learns no key
 * through Status that it did not know; children are listed on request
 * (StatusRequest.children): naming a parent already lets a client cancel
 * them. Depends on the core's accessors and the generated messages.
 */
#include <stdlib.h>
#include <string.h>

#include "sched.h"

/* Children listed in one Status answer, over all its keys: the protocol's
 * bound on one repeated field, and well within a message. */
#define TREE_MAX_CHILDREN 65535

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Is `k` among the sorted request keys? */
static bool named(char **sorted, size_t n, tgs_str k)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *s = sorted[mid];
        size_t sl = strlen(s);
        size_t m = sl < k.len ? sl : k.len;
        int r = m ? memcmp(s, k.ptr, m) : 0;
        if (r == 0)
            r = sl < k.len ? -1 : sl > k.len;
        if (r == 0)
            return true;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Copy the children of `t` (up to *left) as C strings into `arena` at
 * *used; their pointers into ks->children (room for *left). */
static void fill_children(sched *s, const tgs_task *t,
                          taskgrid_v1_KeyStatus *ks, char **ptrs, char *arena,
                          size_t *used, size_t *left)
{
    size_t n = tgs_core_task_nchildren(s->core, t);
    ks->children = ptrs;
    for (size_t i = 0; i<n && * left> 0; i++, (*left)--) {
        tgs_str k = tgs_task_key(tgs_core_task_child(s->core, t, i));
        char *d = arena + *used;
        memcpy(d, k.ptr, k.len);
        d[k.len] = '\0';
        *used += k.len + 1;
        ptrs[ks->children_count++] = d;
    }
}

void *srv_status_tree(sched *s, const taskgrid_v1_StatusRequest *m,
                      taskgrid_v1_KeyStatus *ks)
{
    size_t n = m->keys_count, nkids = 0, bytes = 0;
    const tgs_task **tasks = calloc(n ? n : 1, sizeof(*tasks));
    char **sorted = calloc(n ? n : 1, sizeof(*sorted));
    if (tasks == NULL || sorted == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        tasks[i] = tgs_core_find(s->core, CS(m->keys[i]));
        sorted[i] = m->keys[i];
        if (tasks[i] == NULL || !m->children)
            continue;
        size_t nc = tgs_core_task_nchildren(s->core, tasks[i]);
        for (size_t j = 0; j < nc && nkids < TREE_MAX_CHILDREN; j++, nkids++)
            bytes +=
                tgs_task_key(tgs_core_task_child(s->core, tasks[i], j)).len + 1;
    }
    qsort(sorted, n, sizeof(*sorted), cmp_cstr);
    /* One allocation: the children's pointers, then their keys. */
    char **arena = malloc(nkids * sizeof(char *) + bytes + 1);
    if (arena == NULL)
        goto fail;
    size_t used = 0, left = nkids, at = 0;
    char *text = (char *)(arena + nkids);
    for (size_t i = 0; i < n; i++) {
        const tgs_task *t = tasks[i];
        if (t == NULL)
            continue;
        ks[i].seceded = tgs_task_seceded(t);
        tgs_str p = tgs_core_task_parent(s->core, t);
        if (p.len > 0 && named(sorted, n, p))
            ks[i].parent = B(p);
        if (m->children) {
            size_t before = left;
            fill_children(s, t, &ks[i], arena + at, text, &used, &left);
            at += before - left;
        }
    }
    free(tasks);
    free(sorted);
    return arena;
fail:
    free(tasks);
    free(sorted);
    return NULL;
}
