package main

import (
	"time"

	"go.uber.org/zap"
)

// lifecycle is the server's start-up as a sequence of components and its
// stop as the same sequence reversed, the way VictoriaMetrics' main reads.
// start starts one component, logs "started <name>" with its duration and
// keeps its stop; stop runs the kept stops last-started first, each logged
// "stopped <name>" with its duration. A start that fails returns its error
// at once and run's deferred stop undoes the components started before it,
// so no error path closes anything by hand.
type lifecycle struct {
	log   *zap.Logger
	stops []componentStop
}

type componentStop struct {
	name string
	stop func()
}

// start runs one component's start. It returns the start's error, logging
// nothing; otherwise it logs the start with fields and, when stop is not
// nil, keeps it for stop.
func (lc *lifecycle) start(name string, start func() (stop func(), fields []zap.Field, err error)) error {
	t0 := time.Now()
	stop, fields, err := start()
	if err != nil {
		return err
	}
	lc.log.Info("started "+name, append([]zap.Field{zap.Duration("took", time.Since(t0))}, fields...)...)
	if stop != nil {
		lc.stops = append(lc.stops, componentStop{name: name, stop: stop})
	}
	return nil
}

// stop stops every started component in reverse order of start. A second
// call does nothing.
func (lc *lifecycle) stop() {
	for len(lc.stops) > 0 {
		c := lc.stops[len(lc.stops)-1]
		lc.stops = lc.stops[:len(lc.stops)-1]
		t0 := time.Now()
		c.stop()
		lc.log.Info("stopped "+c.name, zap.Duration("took", time.Since(t0)))
	}
}
