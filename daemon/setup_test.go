package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestWarnLoginHostUID(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(passwd, []byte("alice:x:1000:1000::/home/alice:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n"), 0o644)
	for _, tc := range []struct {
		name string
		uid  int
		want string // "" for no warning
	}{
		{"login user", 1000, `"user":"alice"`},
		{"nobody", 65534, ""},
		{"unused uid", 4242, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := zapr.NewLogger(zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zapcore.DebugLevel)))
			warnLoginHostUID(log, tc.uid, passwd)
			got := buf.String()
			if tc.want == "" {
				if got != "" {
					t.Fatalf("warned: %s", got)
				}
				return
			}
			for _, want := range []string{tc.want, `"level":"warn"`, `"hostUid":1000`, "can write that user's files"} {
				if !strings.Contains(got, want) {
					t.Errorf("log %q lacks %q", got, want)
				}
			}
		})
	}
}
