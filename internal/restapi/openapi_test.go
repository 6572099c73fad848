package restapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/reference/openapi.json")

const committed = "../../docs/reference/openapi.json"

// The committed OpenAPI document is what the code generates: regenerate
// with `go test ./internal/restapi -update`.
func TestOpenAPIIsCommitted(t *testing.T) {
	b, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	job := doc.Components.Schemas["JobSummary"]["properties"].(map[string]any)
	if _, ok := job["submit_time"]; !ok {
		t.Errorf("JobSummary has no submit_time (the _ms timestamp's rendering): %v", job)
	}
	if st := doc.Components.Schemas["JobStatus"]["enum"]; st == nil {
		t.Errorf("JobStatus enum missing")
	}
	if *update {
		if err := os.WriteFile(committed, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatalf("%v: generate it with go test ./internal/restapi -update", err)
	}
	if !bytes.Equal(got, b) {
		t.Fatalf("%s is stale: run go test ./internal/restapi -update and commit it", committed)
	}
}
