package cli

import (
	"encoding/json"
	"fmt"
	"go.yaml.in/yaml/v3"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flowrt/flow/internal/opinfo"
	"github.com/flowrt/flow/pkg/api"
	clusterv1 "github.com/flowrt/flow/proto/flow/cluster/v1"
)

// fieldInfo and typeInfo are the JSON shape of `flowctl operators -o json`.
type fieldInfo struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Required bool     `json:"required"`
	Default  any      `json:"default,omitempty"`
	Enum     []string `json:"enum,omitempty"`
	Doc      string   `json:"doc"`
}

type typeInfo struct {
	Name    string      `json:"name"`
	Kind    string      `json:"kind"`
	Keyed   bool        `json:"keyed"`
	Doc     string      `json:"doc"`
	Fields  []fieldInfo `json:"fields"`
	Example string      `json:"example,omitempty"`
	// SideOutputs are read as <id>.<name>.
	SideOutputs []string `json:"sideOutputs,omitempty"`
}

func describeType(t *clusterv1.OperatorTypeInfo) typeInfo {
	ti := typeInfo{Name: t.GetName(), Kind: t.GetKind(), Keyed: t.GetKeyed(), Doc: t.GetDoc(), Example: t.GetExample(), Fields: []fieldInfo{},
		SideOutputs: t.GetSideOutputs()}
	for _, f := range t.GetFields() {
		ti.Fields = append(ti.Fields, fieldInfo{Name: f.GetName(), Type: f.GetType(), Required: f.GetRequired(),
			Default: defaultValue(f), Enum: f.GetEnum(), Doc: f.GetDoc()})
	}
	return ti
}

// defaultValue decodes a field's default for display (nil: none).
func defaultValue(f *clusterv1.OperatorFieldInfo) any {
	if f.GetDefaultJson() == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(f.GetDefaultJson()))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return f.GetDefaultJson()
	}
	return v
}

func operatorsCommand(g *globals) *cobra.Command {
	var local bool
	cmd := &cobra.Command{
		Use:   "operators [TYPE]",
		Short: "List the cluster's operator types, or show one type's config fields",
		Long: `operators lists the operator types jobs may use, as the JobManager at
--jobmanager knows them (a cluster built with the Go SDK adds its own), or
shows one type's config fields. When no JobManager answers, or with --local,
it lists flowctl's own types and says so on stderr.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError(cmd, "want at most one operator type, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var types []*clusterv1.OperatorTypeInfo
			if !local {
				var err error
				types, err = g.clusterTypes(cmd.Context())
				if err != nil {
					nc, ok := asNoCluster(err)
					if !ok {
						return err
					}
					g.fallbackNote(nc, "listing")
					types = nil
					local = true
				}
			}
			if local {
				types = opinfo.Describe(g.env.Registry)
			}
			if len(args) == 0 {
				if g.machine() {
					out := make([]typeInfo, len(types))
					for i, t := range types {
						out[i] = describeType(t)
					}
					return g.writeJSON(out)
				}
				w := newTable(g.env.Stdout)
				row(w, "TYPE", "KIND", "KEYED", "DESCRIPTION")
				for _, t := range types {
					keyed := "no"
					if t.GetKeyed() {
						keyed = "yes"
					}
					row(w, t.GetName(), t.GetKind(), keyed, firstSentence(t.GetDoc()))
				}
				return w.Flush()
			}
			var variants []*clusterv1.OperatorTypeInfo
			names := []string{}
			for _, t := range types {
				if t.GetName() == args[0] {
					variants = append(variants, t)
				}
				if len(names) == 0 || names[len(names)-1] != t.GetName() {
					names = append(names, t.GetName())
				}
			}
			if len(variants) == 0 {
				return withCode(ExitUsage, fmt.Errorf("%w %q (known types: %s)", api.ErrUnknownType, args[0], strings.Join(names, ", ")))
			}
			if g.machine() {
				if len(variants) == 1 {
					return g.writeJSON(describeType(variants[0]))
				}
				out := make([]typeInfo, len(variants))
				for i, t := range variants {
					out[i] = describeType(t)
				}
				return g.writeJSON(out)
			}
			for i, t := range variants {
				if i > 0 {
					fmt.Fprintln(g.env.Stdout)
				}
				if err := g.describeTypeText(t); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&local, "local", false, "list flowctl's own operator types without asking the cluster")
	return cmd
}

func (g *globals) describeTypeText(t *clusterv1.OperatorTypeInfo) error {
	out := g.env.Stdout
	fmt.Fprintf(out, "%s (%s", t.GetName(), t.GetKind())
	if t.GetKeyed() {
		fmt.Fprint(out, ", keyed: needs keyBy")
	}
	fmt.Fprintln(out, ")")
	if t.GetDoc() != "" {
		fmt.Fprintf(out, "\n%s\n", strings.TrimSpace(t.GetDoc()))
	}
	if len(t.GetSideOutputs()) > 0 {
		fmt.Fprintf(out, "\nSide outputs (read as inputs: [<id>.<name>]): %s\n", strings.Join(t.GetSideOutputs(), ", "))
	}
	fmt.Fprintln(out, "\nConfig fields:")
	if len(t.GetFields()) == 0 {
		fmt.Fprintln(out, "  (none)")
	} else {
		w := newTable(out)
		row(w, "  NAME", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION")
		fields := append([]*clusterv1.OperatorFieldInfo(nil), t.GetFields()...)
		sort.SliceStable(fields, func(i, j int) bool { return fields[i].GetRequired() && !fields[j].GetRequired() })
		for _, f := range fields {
			req := "no"
			if f.GetRequired() {
				req = "yes"
			}
			def := ""
			if d := defaultValue(f); d != nil {
				def = fmt.Sprint(d)
			}
			doc := oneLine(f.GetDoc())
			if len(f.GetEnum()) > 0 {
				doc = strings.TrimSpace(doc + " (one of " + strings.Join(f.GetEnum(), ", ") + ")")
			}
			row(w, "  "+f.GetName(), f.GetType(), req, def, doc)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if t.GetExample() != "" {
		fmt.Fprintf(out, "\nExample:\n%s\n", indent(strings.TrimRight(t.GetExample(), "\n"), "  "))
	}
	return nil
}

func (g *globals) writeJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err == nil && g.output == "yaml" {
		b, err = jsonToYAML(b)
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", g.output, err)
	}
	_, err = fmt.Fprintf(g.env.Stdout, "%s\n", b)
	return err
}

func firstSentence(doc string) string {
	doc = oneLine(doc)
	if i := strings.Index(doc, ". "); i >= 0 {
		return doc[:i+1]
	}
	return doc
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n")
}

// jsonToYAML renders JSON as block YAML with the same values.
func jsonToYAML(b []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	var clear func(*yaml.Node)
	clear = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			clear(c)
		}
	}
	clear(&n)
	return yaml.Marshal(&n)
}
