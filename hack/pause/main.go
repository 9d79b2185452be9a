// The pod sandbox's pause process for the local real node: containerd needs a sandbox
// image, and registry.k8s.io is not reachable from the development machines. Like
// Kubernetes' own pause.c: sleep until SIGINT or SIGTERM, reaping orphaned children
// (it is PID 1 of the pod's PID namespace when the namespace is shared).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
