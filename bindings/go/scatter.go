// SPDX-License-Identifier: Apache-2.0

package taskgrid

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// ScatterFunc is the built-in a scattered object runs as: it returns its
// input unchanged, with the input's codec. C, Python and Go workers all
// provide it (a Go Worker adds it in Run unless one of that name is
// registered).
const ScatterFunc = "tg.echo"

// ErrScatterTooLarge matches (errors.Is) the error of Scatter for data
// larger than one Submit message can carry.
var ErrScatterTooLarge = errors.New("taskgrid: data too large to scatter")

// ScatterOption changes what Scatter does.
type ScatterOption func(*scatterConfig)

type scatterConfig struct {
	codec   string
	key     string
	workers []string
}

// ScatterCodec tags the data with codec (default "raw").
func ScatterCodec(codec string) ScatterOption {
	return func(c *scatterConfig) { c.codec = codec }
}

// ScatterKey names the task key instead of the content-derived one.
func ScatterKey(key string) ScatterOption {
	return func(c *scatterConfig) { c.key = key }
}

// ScatterWorkers holds the data only on one of these workers.
func ScatterWorkers(names ...string) ScatterOption {
	return func(c *scatterConfig) { c.workers = names }
}

// scatterPrefixMax is the longest codec prefix of a content key.
const scatterPrefixMax = 64

// ScatterKeyOf is the key Scatter gives data with codec: "bytes-" (for
// "raw" or "") or "<codec>-" (its first 64 bytes), then the first 32 hex
// digits of the SHA-256 of the codec, a zero byte and the data. Equal data
// and codec give equal keys, in Go, Python (bytes) and C alike.
func ScatterKeyOf(data []byte, codec string) string {
	if codec == "" {
		codec = "raw"
	}
	h := sha256.New()
	h.Write([]byte(codec))
	h.Write([]byte{0})
	h.Write(data)
	prefix := codec
	if codec == "raw" {
		prefix = "bytes"
	} else if len(prefix) > scatterPrefixMax {
		prefix = prefix[:scatterPrefixMax]
	}
	return prefix + "-" + hex.EncodeToString(h.Sum(nil))[:32]
}

// Scatter puts data into the cluster once and returns its Future, to use
// as a dependency of many tasks (Dask's Client.scatter). The data is the
// input of one task running ScatterFunc, so it crosses the scheduler once,
// in the Submit: a result up to the inline limit travels inline, a larger
// one is held by the worker that ran the task and fetched from there by
// the tasks that use it. The key is ScatterKeyOf(data, codec) unless
// ScatterKey names one, so scattering equal data again gives the same
// task. The data may be at most the client's message limit less 64 KiB
// (64 MiB by default; a scheduler with a smaller --max-message refuses
// less); larger returns an error matching ErrScatterTooLarge that names
// the size and the limit, and sends nothing. data is not retained.
func (c *Client) Scatter(ctx context.Context, data []byte, opts ...ScatterOption) (*Future, error) {
	cfg := scatterConfig{codec: "raw"}
	for _, o := range opts {
		o(&cfg)
	}
	key := cfg.key
	if key == "" {
		key = ScatterKeyOf(data, cfg.codec)
	}
	if limit := c.cfg.maxMessage - messageHeadroom; len(data) > limit {
		return nil, fmt.Errorf("%w: %q is %d bytes, over the %d-byte limit of one Submit message (scattered data crosses the scheduler once); make it in a task instead",
			ErrScatterTooLarge, key, len(data), limit)
	}
	return c.Submit(ctx, Task{Key: key, Func: ScatterFunc, Input: data, Codec: cfg.codec, Workers: cfg.workers})
}

// echo is the Go worker's ScatterFunc: the input, with the input's codec.
func echo(ctx context.Context, in []byte, _ [][]byte) ([]byte, error) {
	if info, ok := TaskInfoFromContext(ctx); ok && info.Codec != "" {
		SetResultCodec(ctx, info.Codec)
	}
	return in, nil
}
