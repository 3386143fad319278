package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// toPlain converts v (a proto message, or plain Go data) into JSON-shaped
// data with stable snake_case field names.
func toPlain(v any) (any, error) {
	var b []byte
	var err error
	if m, ok := v.(proto.Message); ok {
		b, err = jsonOpts.Marshal(m)
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return nil, err
	}
	var out any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// print writes v as JSON or YAML, or calls table for people.
func (g *globals) print(v any, table func(w io.Writer)) error {
	switch g.output {
	case "json", "yaml":
		p, err := toPlain(v)
		if err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
		if g.output == "json" {
			e := json.NewEncoder(g.stdout)
			e.SetIndent("", "  ")
			return e.Encode(p)
		}
		e := yaml.NewEncoder(g.stdout)
		e.SetIndent(2)
		if err := e.Encode(yamlNumbers(p)); err != nil {
			return err
		}
		return e.Close()
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// yamlNumbers turns json.Number into int64 or float64 for YAML.
func yamlNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = yamlNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = yamlNumbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}
