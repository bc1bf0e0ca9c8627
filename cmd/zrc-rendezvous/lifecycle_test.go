package main

import (
	"errors"
	"slices"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The start is a sequence of components and the stop its reverse, each
// step logged with its duration; a failed start stops what had started
// (R9, Z12 rely on the stop order).
func TestLifecycleStopsInReverse(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	lc := &lifecycle{log: zap.New(core)}
	var order []string
	comp := func(name string, err error) func() (func(), []zap.Field, error) {
		return func() (func(), []zap.Field, error) {
			if err != nil {
				return nil, nil, err
			}
			order = append(order, "start "+name)
			return func() { order = append(order, "stop "+name) }, []zap.Field{zap.String("of", name)}, nil
		}
	}
	for _, name := range []string{"a", "b"} {
		if err := lc.start(name, comp(name, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := lc.start("none", func() (func(), []zap.Field, error) { return nil, nil, nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := lc.start("c", comp("c", boom)); err != boom {
		t.Fatalf("start of a failing component: got %v; want %v", err, boom)
	}
	lc.stop()
	lc.stop() // a second stop does nothing
	if want := []string{"start a", "start b", "stop b", "stop a"}; !slices.Equal(order, want) {
		t.Errorf("got %q; want %q", order, want)
	}
	var msgs []string
	for _, e := range logs.All() {
		msgs = append(msgs, e.Message)
		if _, ok := e.ContextMap()["took"]; !ok {
			t.Errorf("%q has no took field", e.Message)
		}
	}
	if want := []string{"started a", "started b", "started none", "stopped b", "stopped a"}; !slices.Equal(msgs, want) {
		t.Errorf("log lines: got %q; want %q", msgs, want)
	}
	if got := logs.FilterMessage("started b").All()[0].ContextMap()["of"]; got != "b" {
		t.Errorf("started b: field of = %v; want b", got)
	}
}
