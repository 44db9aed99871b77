// SPDX-License-Identifier: Apache-2.0

// json.go: JSONFunc, which gives a Go function the calling convention of
// the C worker's JSON built-ins (tg.inc, tg.add, ...), so that Go functions
// and C or Python functions can feed each other in one graph.

package taskgrid

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// JSONFunc adapts fn to the convention of the C worker's JSON built-ins.
// The arguments are the task's JSON input (an array is spread into
// positional arguments, any other value is one argument, an empty input
// none), followed by one argument per dependency result, in order (an
// empty "raw" result, e.g. of tg.noop, is null). The returned value is
// marshalled as the result, with codec "json".
//
// An input or dependency that is not JSON fails the task with type
// "TypeError" (wrong codec) or "ValueError" (malformed), as the C built-ins
// do.
func JSONFunc(fn func(ctx context.Context, args []json.RawMessage) (any, error)) Func {
	return func(ctx context.Context, in []byte, deps [][]byte) ([]byte, error) {
		info, _ := TaskInfoFromContext(ctx)
		var args []json.RawMessage
		if len(in) > 0 {
			v, err := jsonArg(info.Func, "the input", in, info.Codec)
			if err != nil {
				return nil, err
			}
			if t := bytes.TrimLeft(v, " \t\r\n"); len(t) > 0 && t[0] == '[' {
				if err := json.Unmarshal(v, &args); err != nil {
					return nil, &TaskError{Type: "ValueError", Message: fmt.Sprintf("%s: the input: %v", info.Func, err)}
				}
			} else {
				args = append(args, v)
			}
		}
		for i, d := range deps {
			codec := ""
			if i < len(info.DepCodecs) {
				codec = info.DepCodecs[i]
			}
			v, err := jsonArg(info.Func, fmt.Sprintf("dependency %d", i+1), d, codec)
			if err != nil {
				return nil, err
			}
			args = append(args, v)
		}
		out, err := fn(ctx, args)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(out)
		if err != nil {
			return nil, &TaskError{Type: "TypeError", Message: fmt.Sprintf("%s: result is not JSON: %v", info.Func, err)}
		}
		SetResultCodec(ctx, "json")
		return b, nil
	}
}

// jsonArg checks one JSON-coded value (without decoding it).
func jsonArg(fn, what string, data []byte, codec string) (json.RawMessage, error) {
	if codec == "" {
		codec = "raw"
	}
	if codec != "json" {
		if len(data) == 0 && codec == "raw" {
			return json.RawMessage("null"), nil
		}
		return nil, &TaskError{Type: "TypeError", Message: fmt.Sprintf("%s takes JSON arguments, but %s has codec '%s'", fn, what, codec)}
	}
	if !json.Valid(data) {
		return nil, &TaskError{Type: "ValueError", Message: fmt.Sprintf("%s: %s is not valid JSON", fn, what)}
	}
	return json.RawMessage(data), nil
}
