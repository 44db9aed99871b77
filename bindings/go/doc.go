// SPDX-License-Identifier: Apache-2.0

// Package taskgrid is the Go binding of taskgrid, a distributed task runner
// with a C scheduler and a language-neutral gRPC protocol
// (proto/taskgrid/v1). It has two halves:
//
//   - a client: [Dial] a scheduler, [Client.Submit] tasks (or a whole graph
//     with [Client.SubmitMany]) and get [Future]s, wait for them with
//     [Client.Gather] or [Future.Result], and [Client.Cancel],
//     [Client.Release], [Client.Annotate], [Client.Scale] or read
//     [Client.Status];
//   - a worker: [NewWorker], [Worker.Register] Go functions under names such
//     as "go.resize", and [Worker.Run] them for the scheduler, next to C and
//     Python workers, so that one graph can cross languages.
//
// Every call that talks to the scheduler takes a [context.Context]; its
// deadline and cancellation apply to the call. Errors wrap the gRPC status
// (status.Code(err) works on them) and, for failed tasks, a [*TaskError]
// (errors.As) carrying the error type, message and traceback from the
// language that raised.
//
// Inside a task, [ClientFromContext] gives a client bound to the worker's
// scheduler and credentials, for nested work; while a task waits on nested
// futures it secedes: its executor slot goes to other tasks and the
// scheduler stops counting it against the worker's threads (it rejoins
// after), so nested work cannot deadlock a full cluster. Its submissions
// name it as their parent: cancelling it cancels them.
//
// Data: small results travel inline through the scheduler; a result over
// the scheduler's inline limit stays on the worker that made it, which
// serves it to dependents on other workers (DataService.Fetch) and
// uploads it in chunks for a client's Gather (see [WithDataListen]).
//
// Throughput: tasks travel in batches both ways. SubmitMany sends a graph in
// one Submit message (split at 10,000 tasks), Gather waits on many futures
// over one stream, and a worker sends every result that is waiting in one
// WorkerMessage.
package taskgrid
