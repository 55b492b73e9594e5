// Command etcd runs the etcd server from go.etcd.io/etcd/server/v3 so the test bed can build it with the Go module proxy alone.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
