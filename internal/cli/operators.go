package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flowrt/flow/pkg/api"
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
}

func describeType(t *api.OperatorType) typeInfo {
	ti := typeInfo{Name: t.Name, Kind: t.Kind.String(), Keyed: t.Keyed, Doc: t.Doc, Example: t.Example, Fields: []fieldInfo{}}
	for _, f := range t.Fields {
		ti.Fields = append(ti.Fields, fieldInfo{Name: f.Name, Type: string(f.Type), Required: f.Required,
			Default: defaultText(f), Enum: f.Enum, Doc: f.Doc})
	}
	return ti
}

// defaultText renders a field default for display (durations as strings).
func defaultText(f api.Field) any {
	if f.Default == nil {
		return nil
	}
	if s, ok := f.Default.(fmt.Stringer); ok {
		return s.String()
	}
	return f.Default
}

func operatorsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "operators [TYPE]",
		Short: "List the registered operator types, or show one type's config fields",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError(cmd, "want at most one operator type, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			reg := g.env.Registry
			if len(args) == 0 {
				types := reg.Types()
				if g.output == "json" {
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
					if t.Keyed {
						keyed = "yes"
					}
					row(w, t.Name, t.Kind.String(), keyed, firstSentence(t.Doc))
				}
				return w.Flush()
			}
			variants, err := reg.Variants(args[0])
			if err != nil {
				return withCode(ExitUsage, err)
			}
			if g.output == "json" {
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
}

func (g *globals) describeTypeText(t *api.OperatorType) error {
	out := g.env.Stdout
	{
		{
			fmt.Fprintf(out, "%s (%s", t.Name, t.Kind)
			if t.Keyed {
				fmt.Fprint(out, ", keyed: needs keyBy")
			}
			fmt.Fprintln(out, ")")
			if t.Doc != "" {
				fmt.Fprintf(out, "\n%s\n", strings.TrimSpace(t.Doc))
			}
			fmt.Fprintln(out, "\nConfig fields:")
			if len(t.Fields) == 0 {
				fmt.Fprintln(out, "  (none)")
			} else {
				w := newTable(out)
				row(w, "  NAME", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION")
				fields := append([]api.Field(nil), t.Fields...)
				sort.SliceStable(fields, func(i, j int) bool { return fields[i].Required && !fields[j].Required })
				for _, f := range fields {
					req := "no"
					if f.Required {
						req = "yes"
					}
					def := ""
					if d := defaultText(f); d != nil {
						def = fmt.Sprint(d)
					}
					doc := oneLine(f.Doc)
					if len(f.Enum) > 0 {
						doc = strings.TrimSpace(doc + " (one of " + strings.Join(f.Enum, ", ") + ")")
					}
					row(w, "  "+f.Name, string(f.Type), req, def, doc)
				}
				if err := w.Flush(); err != nil {
					return err
				}
			}
			if t.Example != "" {
				fmt.Fprintf(out, "\nExample:\n%s\n", indent(strings.TrimRight(t.Example, "\n"), "  "))
			}
			return nil
		}
	}
}

func (g *globals) writeJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
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
