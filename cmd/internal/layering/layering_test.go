package layering

import (
	"bufio"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// allowed lists, per top-level folder of the module, the top-level folders
// of ours it may import. A package in a sub-folder (httpapi/x) follows its
// top-level folder's rule, and every package may import packages under its
// own top-level folder (httpapi → httpapi/x), since the compiler already
// forbids cycles there. A folder missing here — packaging/, the
// module root — may import nothing of ours: give it a row when it needs to.
var allowed = map[string][]string{
	"actor":      nil,
	"conf":       nil,
	"supervisor": {"actor"},
	// httpapi speaks the engine's vocabulary (actor's types and its
	// Mailboxes interface) and never the engine itself: cmd hands it the
	// supervisor, and a second engine can enter through the same seam.
	"httpapi": {"actor", leafRules},
}

// leafRules is the one package below another top-level folder that a
// folder may import by name: the rules for tokens, IP lists and limits,
// which both the config's validation and the guard apply. It must itself
// import nothing of ours (mayImport), so the edge cannot pull the rest of
// conf in.
const leafRules = "conf/rules"

// anyOfOurs is the folder whose packages may import every package of ours:
// the binaries wire everything together.
const anyOfOurs = "cmd"

// topLevel is the first element of a slash-separated module-relative path;
// "" for the module root.
func topLevel(rel string) string {
	top, _, _ := strings.Cut(rel, "/")
	if top == "." {
		return ""
	}
	return top
}

// mayImport reports whether the package in folder from (relative to the
// module root, slash-separated) may import our package in folder to.
func mayImport(from, to string) bool {
	if from == leafRules {
		return false
	}
	f, t := topLevel(from), topLevel(to)
	if f == anyOfOurs || f == t {
		return true
	}
	return slices.Contains(allowed[f], t) || slices.Contains(allowed[f], to)
}

func TestMayImport(t *testing.T) {
	tests := []struct {
		name     string
		from, to string
		want     bool
	}{
		{"supervisor uses actor", "supervisor", "actor", true},
		{"httpapi must not reach the engine", "httpapi", "supervisor", false},
		{"httpapi uses actor", "httpapi", "actor", true},
		{"httpapi sub-package inherits httpapi", "httpapi/auth", "supervisor", false},
		{"httpapi sub-package inherits httpapi's edges", "httpapi/auth", "actor", true},
		{"httpapi uses its own sub-package", "httpapi", "httpapi/auth", true},
		{"cmd uses everything", "cmd/zrc-rendezvous", "conf", true},
		{"cmd uses sub-packages", "cmd/zrc-rendezvous", "httpapi/auth", true},
		{"actor imports nothing of ours", "actor", "supervisor", false},
		{"actor must not reach cmd", "actor", "cmd/zrc-rendezvous", false},
		{"conf imports nothing of ours", "conf", "actor", false},
		{"supervisor must not reach httpapi", "supervisor", "httpapi", false},
		{"supervisor must not reach conf", "supervisor", "conf", false},
		{"httpapi must not reach conf", "httpapi", "conf", false},
		{"httpapi sub-package must not reach conf", "httpapi/auth", "conf", false},
		{"httpapi uses the shared rules", "httpapi/guard", "conf/rules", true},
		{"httpapi must not reach conf's other sub-packages", "httpapi", "conf/other", false},
		{"conf uses its own rules", "conf", "conf/rules", true},
		{"the rules import nothing of ours", "conf/rules", "conf", false},
		{"unknown folder imports nothing of ours", "tools/x", "actor", false},
		{"module root imports nothing of ours", ".", "actor", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mayImport(tt.from, tt.to); got != tt.want {
				t.Errorf("mayImport(%q, %q) = %v; want %v", tt.from, tt.to, got, tt.want)
			}
		})
	}
}

// TestImportsPointOneWay checks every import of every non-test .go file in
// the module against mayImport. It parses files regardless of build
// constraints, so a windows-only file is held to the same rule.
func TestImportsPointOneWay(t *testing.T) {
	root, modPath := moduleRoot(t)
	fset := token.NewFileSet()
	scanned := map[string]bool{} // module-relative folders with a non-test .go file
	var problems []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p == root {
				return nil
			}
			// What the go command ignores: testdata, vendor, hidden and
			// _-prefixed folders, and nested modules.
			if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") ||
			strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		from := path.Dir(rel)
		scanned[from] = true
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			ip, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			var to string
			switch {
			case ip == modPath:
				to = "."
			case strings.HasPrefix(ip, modPath+"/"):
				to = strings.TrimPrefix(ip, modPath+"/")
			default:
				continue // the standard library or another module
			}
			if !mayImport(from, to) {
				problems = append(problems, fmt.Sprintf("%s imports %q: %s", rel, ip, rule(from)))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	// Guard against passing vacuously because the walk found nothing.
	for _, want := range []string{"actor", "supervisor"} {
		if !scanned[want] {
			t.Fatalf("found no non-test .go file in %s/%s; is %s the module root?", root, want, root)
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Errorf("imports against the one-way dependency rule (STYLE.md rule 3; the table is in %s):\n\t%s",
			"cmd/internal/layering/layering_test.go", strings.Join(problems, "\n\t"))
	}
}

// rule describes what the package in folder from may import, for messages.
func rule(from string) string {
	top := topLevel(from)
	if top == "" {
		return "the module root may import no package of ours"
	}
	deps, known := allowed[top]
	switch {
	case !known:
		return top + "/ has no rule, so it may import no package of ours"
	case len(deps) == 0:
		return top + " may import no package of ours outside " + top + "/"
	default:
		return top + " may import only " + strings.Join(deps, ", ") + " (and " + top + "/...)"
	}
}

// moduleRoot walks up from the test's directory to the folder holding
// go.mod and returns it with the module path declared there.
func moduleRoot(t *testing.T) (root, modPath string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, err := os.Open(filepath.Join(dir, "go.mod"))
		if err == nil {
			defer f.Close()
			s := bufio.NewScanner(f)
			for s.Scan() {
				fields := strings.Fields(s.Text())
				if len(fields) >= 2 && fields[0] == "module" {
					mp := fields[1]
					if unq, err := strconv.Unquote(mp); err == nil {
						mp = unq
					}
					return dir, mp
				}
			}
			t.Fatalf("%s/go.mod has no module line (scan error: %v)", dir, s.Err())
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
