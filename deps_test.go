// Package mrt_test holds tests of the module as a whole.
package mrt_test

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mrt-project/mrt"

// allowed lists, for each package of the module, the packages of the
// module its non-test files may import; the package docs say why. Imports
// point down: cmd/mrtd -> daemon -> {config, rootfs, pool, control,
// internal/systemd}; pool -> {supervisor, container, reaper}; supervisor
// and container never import each other. A package missing here fails the
// test: place it first.
var allowed = map[string][]string{
	"cmd/mrtd":          {"config", "control", "daemon", "image", "internal/systemd", "internal/userns", "rootfs", "container"}, // container: mrtd run's exit codes only
	"daemon":            {"config", "control", "image", "internal/metrics", "internal/systemd", "internal/userns", "pool", "rootfs", "container"},
	"image":             {"rootfs"},
	"control":           {},
	"internal/systemd":  {},
	"internal/metrics":  {},
	"config":            {"internal/userns"},
	"rootfs":            {},
	"pool":              {"container", "reaper", "supervisor"},
	"supervisor":        {},
	"container":         {"reaper"},
	"reaper":            {},
	"internal/mrtdtest": {"rootfs"},
	"internal/userns":   {},
	"deploy/systemd":    {},
	// The bench builds the raw-runc floor's config.json as mrtd does.
	"tools/bench":   {"config", "container", "internal/mrtdtest", "rootfs"},
	"tools/flatten": {"image", "rootfs"},
	"tools/pack":    {},
	"tools/soak":    {"internal/mrtdtest", "rootfs"},
	"e2e":           {"internal/mrtdtest"},
}

// testAllowed are the packages a package's tests may import besides what
// its code may: e2e tests drive bin/mrtd from outside, and speak the
// control socket's wire protocol.
var testAllowed = map[string][]string{
	"e2e": {"internal/mrtdtest", "control"},
}

type goPackage struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func TestImportDirections(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if rel == "" {
			continue // this test
		}
		seen++
		ok, known := allowed[rel]
		if !known {
			t.Errorf("package %s is not in deps_test.go's allowed imports: say what it may import", rel)
			continue
		}
		check := func(what string, imports, may []string) {
			for _, imp := range imports {
				dep, mine := strings.CutPrefix(imp, module+"/")
				if !mine || dep == rel {
					continue
				}
				if !slices.Contains(may, dep) {
					t.Errorf("%s %s imports %s, against the directions (allowed: %v)", rel, what, dep, may)
				}
			}
		}
		check("code", p.Imports, ok)
		check("tests", append(p.TestImports, p.XTestImports...), append(append([]string{}, ok...), testAllowed[rel]...))
	}
	if seen < 10 {
		t.Fatalf("go list found %d packages: the test does not see the module", seen)
	}
}
