package jobspec

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/flowrt/flow/internal/expression"
	"github.com/flowrt/flow/pkg/api"
	"github.com/flowrt/flow/pkg/keygroup"
	jobgraphv1 "github.com/flowrt/flow/proto/flow/jobgraph/v1"
)

// This file holds the parsing of the operators list: each operator, its
// inputs (edges, side outputs, partitioning) and the graph checks.

// operators parses the operators list and checks the graph; it returns the
// operators in topological order (stable in spec order), or nil on errors.
func (p *parser) operators(e entry, par, maxPar int) []*operator {
	seq := e.val
	if seq.Kind != yaml.SequenceNode {
		p.errAt(seq, "operators: want a list of operators, got %s", kindName(seq))
		return nil
	}
	if len(seq.Content) == 0 {
		p.errAt(seq, "operators: the list is empty: add at least a source and a sink")
		return nil
	}
	var ops []*operator
	byID := map[string]*operator{}
	byUID := map[string]*operator{}
	for i, n := range seq.Content {
		op := p.operator(resolve(n), i, par, maxPar)
		if op == nil {
			continue
		}
		if op.id != "" {
			if first, dup := byID[op.id]; dup {
				p.errAt(op.idNode, "operator id %q is already used on line %d: ids must be unique", op.id, first.idNode.Line)
				continue
			}
			byID[op.id] = op
		}
		if op.uid != "" {
			if first, dup := byUID[op.uid]; dup && first != op {
				at := op.uidNode
				if at == nil {
					at = op.idNode
				}
				p.errAt(at, "operator %q: uid %q is already used by operator %q: uids must be unique", op.id, op.uid, first.id)
			} else {
				byUID[op.uid] = op
			}
		}
		ops = append(ops, op)
	}

	ids := make([]string, 0, len(ops))
	for _, op := range ops {
		if op.id != "" {
			ids = append(ids, op.id)
		}
	}
	sources, sinks := 0, 0
	for _, op := range ops {
		if op.typ == nil {
			continue
		}
		switch op.typ.Kind {
		case api.KindSource:
			sources++
		case api.KindSink:
			sinks++
		}
		seen := map[string]int{}
		for i, in := range op.inputs {
			at := op.inNodes[i]
			first, dup := seen[in]
			switch src := byID[in]; {
			case in == op.id:
				p.errAt(at, "operator %q: lists itself as input: remove it", op.id)
			case dup && op.inSide[first] == op.inSide[i]:
				p.errAt(at, "operator %q: input %q is listed twice: remove one", op.id, ref(in, op.inSide[i]))
			case dup:
				p.errAt(at, "operator %q: reads two outputs of %q (%s and %s): an operator reads one output of another; put an operator (such as a filter) between them for the second",
					op.id, in, ref(in, op.inSide[first]), ref(in, op.inSide[i]))
			case src == nil:
				p.errAt(at, "operator %q: input %q is not an operator id%s (ids: %s)", op.id, in, didYouMean(in, ids), strings.Join(ids, ", "))
			case op.inSide[i] != "" && src.typ != nil && !src.typ.HasSideOutput(op.inSide[i]):
				p.errAt(at, "operator %q: input %q: %s", op.id, ref(in, op.inSide[i]), noSideOutput(in, src.typ, op.inSide[i]))
			case src.typ != nil && src.typ.Kind == api.KindSink:
				p.errAt(at, "operator %q: input %q is a sink, which emits nothing: read from an operator or source instead", op.id, in)
			case op.part == jobgraphv1.Partitioning_PARTITIONING_FORWARD && src.par != op.par:
				p.errAt(op.partNode, "operator %q: forward partitioning needs equal parallelism, but input %q has %d and %q has %d: use rebalance, keyBy, or equal parallelism",
					op.id, in, src.par, op.id, op.par)
			}
			if !dup {
				seen[in] = i
			}
		}
	}
	if len(p.errs.List) > 0 {
		return nil
	}
	if sources == 0 {
		p.errAt(seq, "operators: the job has no source: add one (see 'flowctl operators' for source types)")
	}
	if sinks == 0 {
		p.errAt(seq, "operators: the job has no sink, so its results go nowhere: add one, e.g. type: print")
	}

	// Topological order (Kahn), stable in spec order; leftovers form cycles.
	done := map[string]bool{}
	var order []*operator
	for len(order) < len(ops) {
		progressed := false
		for _, op := range ops {
			if done[op.id] {
				continue
			}
			ready := true
			for _, in := range op.inputs {
				if !done[in] {
					ready = false
					break
				}
			}
			if ready {
				done[op.id] = true
				order = append(order, op)
				progressed = true
			}
		}
		if !progressed {
			// Drop operators that merely read from a cycle: repeatedly
			// remove those no remaining operator reads.
			left := map[string]bool{}
			for _, op := range ops {
				left[op.id] = !done[op.id]
			}
			for changed := true; changed; {
				changed = false
				read := map[string]bool{}
				for _, op := range ops {
					if left[op.id] {
						for _, in := range op.inputs {
							read[in] = true
						}
					}
				}
				for _, op := range ops {
					if left[op.id] && !read[op.id] {
						left[op.id], changed = false, true
					}
				}
			}
			var cyc []string
			var first *operator
			for _, op := range ops {
				if left[op.id] {
					if first == nil {
						first = op
					}
					cyc = append(cyc, op.id)
				}
			}
			p.errAt(first.inputsKey, "operators %s form a cycle through their inputs: a job must be a DAG, remove one of these inputs", quoteList(cyc))
			return nil
		}
	}
	return order
}

// ref is an input reference: the operator id, with ".side" for a side
// output.
func ref(id, side string) string {
	if side == "" {
		return id
	}
	return id + "." + side
}

// noSideOutput says that operator id of type typ has no side output side.
func noSideOutput(id string, typ *api.OperatorType, side string) string {
	if len(typ.SideOutputs) == 0 {
		return fmt.Sprintf("operator %q (type %q) has no side outputs: read %q", id, typ.Name, id)
	}
	return fmt.Sprintf("operator %q (type %q) has no side output %q%s (side outputs: %s)", id, typ.Name, side,
		didYouMean(side, typ.SideOutputs), strings.Join(typ.SideOutputs, ", "))
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// inputKeys are the keys of an input given as a mapping.
var inputKeys = []string{"from", "keyBy", "partitioning"}

// inputEntry parses one input given as {from, keyBy, partitioning}.
func (p *parser) inputEntry(op *operator, n *yaml.Node, what string) {
	m, ok := p.mapping(n, what, inputKeys)
	if !ok {
		return
	}
	e, ok := m["from"]
	if !ok {
		p.errAt(n, "%s: from is required: add from: <operator id>", what)
		return
	}
	from, ok := p.str(e, what+": from")
	if !ok {
		return
	}
	keyBy, part := "", jobgraphv1.Partitioning_PARTITIONING_UNSPECIFIED
	if k, ok := m["keyBy"]; ok {
		if s, ok := p.str(k, what+": keyBy"); ok {
			if _, err := expression.Compile(s); err != nil {
				p.errAt(k.val, "%s: keyBy: %s", what, firstLine(err.Error()))
			}
			keyBy = s
		}
	}
	if pe, ok := m["partitioning"]; ok {
		if keyBy != "" {
			p.errAt(pe.key, "%s: partitioning conflicts with keyBy (keyBy implies hash partitioning): remove one", what)
		} else if s, ok := p.enum(pe, what+": partitioning", PartitioningForwardName, PartitioningRebalanceName, PartitioningBroadcastName); ok {
			part = map[string]jobgraphv1.Partitioning{
				PartitioningForwardName:   jobgraphv1.Partitioning_PARTITIONING_FORWARD,
				PartitioningRebalanceName: jobgraphv1.Partitioning_PARTITIONING_REBALANCE,
				PartitioningBroadcastName: jobgraphv1.Partitioning_PARTITIONING_BROADCAST,
			}[s]
		}
	}
	op.inputs = append(op.inputs, from)
	op.inNodes = append(op.inNodes, e.val)
	op.inKeyBy = append(op.inKeyBy, keyBy)
	op.inPart = append(op.inPart, part)
}

// operator parses one entry of the operators list.
func (p *parser) operator(n *yaml.Node, index, jobPar, maxPar int) *operator {
	what := fmt.Sprintf("operators[%d]", index)
	if v := mappingValue(n, "id"); v != nil && v.Kind == yaml.ScalarNode && v.Value != "" {
		what = fmt.Sprintf("operator %q", v.Value)
	}
	m, ok := p.mapping(n, what, operatorKeys)
	if !ok {
		return nil
	}
	op := &operator{node: n, par: jobPar, onError: OnErrorFail}
	if e, ok := m["id"]; ok {
		op.idNode = e.val
		if s, ok := p.str(e, what+".id"); ok {
			if !idRE.MatchString(s) {
				p.errAt(e.val, "%s: id %q may only contain letters, digits, '_' and '-': rename it", what, s)
			}
			op.id = s
		}
	} else {
		p.errAt(n, "%s: id is required: add id: <name>", what)
	}
	if op.idNode == nil {
		op.idNode = n
	}
	if e, ok := m["type"]; ok {
		op.typeNode = e.val
		if s, ok := p.str(e, what+": type"); ok {
			_, hasInputs := m["inputs"]
			t, err := p.reg.Resolve(s, hasInputs)
			if err != nil {
				names := p.reg.Names()
				p.errAt(e.val, "%s: unknown type %q%s (known types: %s)", what, s, didYouMean(s, names), strings.Join(names, ", "))
			} else {
				op.typ = t
			}
		}
	} else {
		p.errAt(n, "%s: type is required: add type: <operator type> (see 'flowctl operators')", what)
	}
	op.uid = op.id
	if e, ok := m["uid"]; ok {
		op.uidNode = e.val
		if s, ok := p.str(e, what+": uid"); ok {
			if strings.TrimSpace(s) == "" {
				p.errAt(e.val, "%s: uid is empty: remove it (it defaults to the id) or set one", what)
			}
			op.uid = s
		}
	}
	isSource := op.typ != nil && op.typ.Kind == api.KindSource
	if e, ok := m["inputs"]; ok {
		op.inputsKey = e.key
		if isSource {
			p.errAt(e.key, "%s: a source (type %q) takes no inputs: remove inputs", what, op.typ.Name)
		} else {
			switch e.val.Kind {
			case yaml.ScalarNode:
				if s, ok := p.str(e, what+": inputs"); ok {
					op.inputs, op.inNodes = []string{s}, []*yaml.Node{e.val}
					op.inKeyBy, op.inPart = []string{""}, []jobgraphv1.Partitioning{jobgraphv1.Partitioning_PARTITIONING_UNSPECIFIED}
				}
			case yaml.SequenceNode:
				for i, in := range e.val.Content {
					in = resolve(in)
					if in.Kind == yaml.MappingNode {
						p.inputEntry(op, in, fmt.Sprintf("%s: inputs[%d]", what, i))
						continue
					}
					if s, ok := p.str(entry{val: in}, what+": inputs"); ok {
						op.inputs = append(op.inputs, s)
						op.inNodes = append(op.inNodes, in)
						op.inKeyBy = append(op.inKeyBy, "")
						op.inPart = append(op.inPart, jobgraphv1.Partitioning_PARTITIONING_UNSPECIFIED)
					}
				}
				if len(e.val.Content) == 0 {
					p.errAt(e.val, "%s: inputs is empty: list the ids of the operators it reads", what)
				}
			default:
				p.errAt(e.val, "%s: inputs: want a list of operator ids, got %s", what, kindName(e.val))
			}
		}
	} else if op.typ != nil && !isSource {
		op.inputsKey = op.idNode
		p.errAt(op.idNode, "%s: inputs is required: type %q is %s %s; add inputs: [<operator id>]", what, op.typ.Name, article(op.typ.Kind.String()), op.typ.Kind)
	}
	if op.inputsKey == nil {
		op.inputsKey = op.idNode
	}
	op.inSide = make([]string, len(op.inputs))
	for i, in := range op.inputs {
		if id, side, ok := strings.Cut(in, "."); ok {
			op.inputs[i], op.inSide[i] = id, side
		}
	}
	if e, ok := m["keyBy"]; ok {
		op.keyByNode = e.val
		if isSource {
			p.errAt(e.key, "%s: keyBy applies to the input of an operator; a source has none: move keyBy to the operator that reads it", what)
		} else if s, ok := p.str(e, what+": keyBy"); ok {
			if _, err := expression.Compile(s); err != nil {
				p.errAt(e.val, "%s: keyBy: %s", what, firstLine(err.Error()))
			}
			op.keyBy = s
		}
	} else if op.typ != nil && op.typ.Keyed && op.vertexKeyBy() == "" {
		hint := ""
		if op.typ.Inputs == 2 {
			hint = ", or a keyBy on each input"
		}
		p.errAt(op.typeNode, "%s: type %q is keyed and needs keyBy: add keyBy: <expression giving the key>%s", what, op.typ.Name, hint)
	}
	if op.typ != nil && op.typ.Inputs == 2 && op.inputs != nil && len(op.inputs) != 2 {
		p.errAt(op.inputsKey, "%s: type %q has two inputs, but %d are listed: list two, inputs: [<first>, <second>]", what, op.typ.Name, len(op.inputs))
	}
	if op.typ != nil && op.typ.Inputs == 2 && op.typ.Keyed {
		for i := range op.inputs {
			if op.inPart[i] != jobgraphv1.Partitioning_PARTITIONING_BROADCAST && op.inKeyBy[i] == "" && op.keyBy == "" {
				p.errAt(op.inNodes[i], "%s: input %q of keyed type %q has no key: give it keyBy (or partitioning: broadcast)", what, op.inputs[i], op.typ.Name)
			}
		}
	}
	if e, ok := m["partitioning"]; ok {
		op.partNode = e.val
		switch {
		case isSource:
			p.errAt(e.key, "%s: partitioning applies to inputs; a source has none: remove it", what)
		case op.keyByNode != nil:
			p.errAt(e.key, "%s: partitioning conflicts with keyBy (keyBy implies hash partitioning): remove one", what)
		default:
			if e.val.Kind == yaml.ScalarNode && e.val.Value == "hash" {
				p.errAt(e.val, "%s: partitioning: hash is implied by keyBy: set keyBy instead", what)
				break
			}
			if s, ok := p.enum(e, what+": partitioning", PartitioningForwardName, PartitioningRebalanceName, PartitioningBroadcastName); ok {
				op.part = map[string]jobgraphv1.Partitioning{
					PartitioningForwardName:   jobgraphv1.Partitioning_PARTITIONING_FORWARD,
					PartitioningRebalanceName: jobgraphv1.Partitioning_PARTITIONING_REBALANCE,
					PartitioningBroadcastName: jobgraphv1.Partitioning_PARTITIONING_BROADCAST,
				}[s]
			}
		}
	}
	if e, ok := m["parallelism"]; ok {
		op.parNode = e.val
		if v, ok := p.integer(e, what+": parallelism"); ok {
			if err := keygroup.Validate(int(min(max(v, -1), 1<<30)), maxPar); err != nil {
				p.errAt(e.val, "%s: %v", what, err)
			} else {
				op.par = int(v)
			}
		}
	}
	if e, ok := m["onError"]; ok {
		if s, ok := p.enum(e, what+": onError", OnErrorFail, OnErrorSkip); ok {
			op.onError = s
		}
	}
	if e, ok := m["watermarks"]; ok {
		if op.typ != nil && !isSource {
			p.errAt(e.key, "%s: watermarks apply to sources only: move them to the source", what)
		} else {
			op.wm = p.watermarks(e.val, what)
		}
	}
	if op.typ != nil {
		op.config = p.config(m["config"], op, what)
	}
	return op
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
