package main

import (
	"os"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/internal/systemd"
)

// newLogger returns a logr.Logger for format: "journal" (journald's native
// protocol), "console", "json", or "auto": the journal when systemd connected
// stderr to it, console lines on a terminal, JSON otherwise. When the journal
// cannot be reached, it logs JSON to w and says so once.
func newLogger(w *os.File, level, format string) logr.Logger {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = zapcore.InfoLevel
	}
	if format == "" || format == "auto" {
		switch {
		case systemd.StderrIsJournal():
			format = "journal"
		case isTerminal(w):
			format = "console"
		default:
			format = "json"
		}
	}
	sink := zapcore.Lock(zapcore.AddSync(w))
	jsonCore := zapcore.NewCore(jsonEncoder(), sink, lvl)
	var core zapcore.Core
	var journalErr error
	switch format {
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		core = zapcore.NewCore(zapcore.NewConsoleEncoder(ec), sink, lvl)
	case "journal":
		jc, err := systemd.NewJournalCore(systemd.JournalSocket(), lvl, jsonCore)
		if err != nil {
			core, journalErr = jsonCore, err
			break
		}
		core = jc
	default:
		core = jsonCore
	}
	log := zapr.NewLogger(zap.New(core)).WithName("mrtd")
	if journalErr != nil {
		log.Info("journal unavailable, logging to stderr", "socket", systemd.JournalSocket(), "reason", journalErr.Error())
	}
	return log
}

func jsonEncoder() zapcore.Encoder {
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	ec.TimeKey = "time"
	ec.MessageKey = "msg"
	return zapcore.NewJSONEncoder(ec)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
