// Package builtin registers every built-in operator type into api.Default
// when imported (for its side effects):
//
//	import _ "github.com/flowrt/flow/pkg/builtin"
//
// Sources: datagen, file, kafka, nexmark. Operators: map, filter, select,
// lookup; keyed (stateful): count, reduce, dedupe, window, session, top,
// distinct; two-input (keyed): interval-join, window-join, join. Sinks:
// print, blackhole, file, kafka.
package builtin

import (
	_ "github.com/flowrt/flow/pkg/connectors/blackhole"
	_ "github.com/flowrt/flow/pkg/connectors/datagen"
	_ "github.com/flowrt/flow/pkg/connectors/file"
	_ "github.com/flowrt/flow/pkg/connectors/kafka"
	_ "github.com/flowrt/flow/pkg/connectors/nexmark"
	_ "github.com/flowrt/flow/pkg/connectors/print"
	_ "github.com/flowrt/flow/pkg/operators/count"
	_ "github.com/flowrt/flow/pkg/operators/dedupe"
	_ "github.com/flowrt/flow/pkg/operators/distinct"
	_ "github.com/flowrt/flow/pkg/operators/join"
	_ "github.com/flowrt/flow/pkg/operators/lookup"
	_ "github.com/flowrt/flow/pkg/operators/reduce"
	_ "github.com/flowrt/flow/pkg/operators/session"
	_ "github.com/flowrt/flow/pkg/operators/top"
	_ "github.com/flowrt/flow/pkg/operators/transform"
	_ "github.com/flowrt/flow/pkg/operators/window"
)
