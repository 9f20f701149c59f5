package control

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

// TestLabels: an image's labels travel in status answers, and an answer
// without them has no labels key, as older daemons send and clients read.
func TestLabels(t *testing.T) {
	labels := map[string]string{"org.opencontainers.image.title": "worker", "team": "preservation"}
	r := serve(t, &Server{Pool: newFakePool(1), Instance: "test", MaxWorkers: 8, Labels: labels}, "")
	if resp := raw(t, r.path, `{"command":"status"}`); !maps.Equal(resp.Labels, labels) {
		t.Errorf("status labels = %v, want %v", resp.Labels, labels)
	}
	r2 := serve(t, &Server{Pool: newFakePool(1), Instance: "test", MaxWorkers: 8}, "")
	if resp := raw(t, r2.path, `{"command":"status"}`); resp.Labels != nil {
		t.Errorf("status labels without an image = %v, want none", resp.Labels)
	}

	b, err := json.Marshal(Response{Instance: "mrtd", Labels: labels})
	if err != nil || !strings.Contains(string(b), `"labels":{"org.opencontainers.image.title":"worker","team":"preservation"}`) {
		t.Errorf("encoded %s, %v", b, err)
	}
	b, _ = json.Marshal(Response{Instance: "mrtd"})
	if strings.Contains(string(b), "labels") {
		t.Errorf("encoded without labels: %s", b)
	}
	// An older daemon's answer decodes; a newer one's extra key is
	// ignored by an older client's struct as by any JSON decoder.
	var resp Response
	if err := json.Unmarshal([]byte(`{"instance":"mrtd","desired":1,"workers":[]}`), &resp); err != nil || resp.Labels != nil {
		t.Errorf("an older daemon's answer: %+v, %v", resp, err)
	}
}
