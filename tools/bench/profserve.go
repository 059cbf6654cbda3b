package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/service"
)

// runProfServe is `bench serve-profiled`: falbridge's engine exactly as
// `falbridge serve` wires it (config from defaults and FALBRIDGE_*
// variables, JSON logs on stderr, service.Run), plus a CPU profile of the
// span between SIGUSR1 and SIGUSR2, so that the profile covers the load and
// its tail and nothing of start-up. falbridge serve has no profiling
// endpoint; this keeps it that way.
func runProfServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench serve-profiled", flag.ContinueOnError)
	out := fs.String("cpuprofile", "", "write the CPU profile here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(config.LoadOptions{})
	if err != nil {
		return err
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sig)
	profCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var f *os.File
		stop := func() error {
			if f == nil {
				return nil
			}
			pprof.StopCPUProfile()
			err := f.Close()
			f = nil
			if err != nil {
				return err
			}
			// The allocations since start, beside the CPU profile: what
			// the hot path makes the GC (and the RSS) pay for.
			hf, err := os.Create(*out + ".allocs")
			if err != nil {
				return err
			}
			if err := pprof.Lookup("allocs").WriteTo(hf, 0); err != nil {
				hf.Close()
				return err
			}
			return hf.Close()
		}
		for {
			select {
			case <-profCtx.Done():
				done <- stop()
				return
			case s := <-sig:
				switch {
				case s == syscall.SIGUSR1 && f == nil:
					nf, err := os.Create(*out)
					if err != nil {
						done <- err
						return
					}
					f = nf
					if err := pprof.StartCPUProfile(f); err != nil {
						done <- err
						return
					}
				case s == syscall.SIGUSR2:
					if err := stop(); err != nil {
						done <- err
						return
					}
				}
			}
		}
	}()
	runErr := service.Run(ctx, *cfg, service.Options{Logger: log})
	cancel()
	profErr := <-done
	if runErr != nil {
		return fmt.Errorf("serve: %w", runErr)
	}
	if profErr != nil {
		return fmt.Errorf("cpu profile: %w", profErr)
	}
	return nil
}
