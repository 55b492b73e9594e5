// Command peer serves benchmark snapshots with go-control-plane, so benchmarks/xds_push.py can compare
// mcgw's xDS server with it on the same resources, the same Envoys and the same machine.
//
// Protocol (shared with benchmarks/_mcgw_bench_server.py):
//
//	stdin:  "load <file>"  file = records of a 4-byte big-endian length and a serialised google.protobuf.Any
//	stdout: "ready <port>", "published <unix-ns>", "loaded", and per stream event
//	        "push <stream> <type> <bytes> <unix-ns>", "ack <stream> <type> <unix-ns>", "nack <stream> <type> <unix-ns>"
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	// Registered for anypb.UnmarshalNew.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

const group = "bench"

var (
	outMu sync.Mutex
	out   = bufio.NewWriter(os.Stdout)
)

func emit(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(out, format+"\n", args...)
	out.Flush()
}

// emitReply reports an ACK or NACK: a request that answers a response (it carries that response's nonce).
func emitReply(stream int64, nonce string, rejected bool, typeURL string) {
	if nonce == "" {
		return
	}
	kind := "ack"
	if rejected {
		kind = "nack"
	}
	emit("%s %d %s %d", kind, stream, short(typeURL), time.Now().UnixNano())
}

func short(typeURL string) string { return typeURL[strings.LastIndex(typeURL, ".")+1:] }

// oneGroup puts every Envoy in the same node group, like mcgw's (cluster, gateway) groups.
type oneGroup struct{}

func (oneGroup) ID(*core.Node) string { return group }

func readRecords(path string) ([]*anypb.Any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	reader := bufio.NewReader(f)
	var records []*anypb.Any
	for {
		var size uint32
		if err := binary.Read(reader, binary.BigEndian, &size); err == io.EOF {
			return records, nil
		} else if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(reader, buf); err != nil {
			return nil, err
		}
		record := &anypb.Any{}
		if err := proto.Unmarshal(buf, record); err != nil {
			return nil, err
		}
		records = append(records, record)
	}
}

// snapshotOf gives each type a version that hashes its content, as mcgw does, so unchanged types are not resent.
func snapshotOf(messages map[string][]types.Resource) (*cachev3.Snapshot, error) {
	snapshot := &cachev3.Snapshot{}
	for typeURL, items := range messages {
		digest := sha256.New()
		for _, item := range items {
			bytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(item)
			if err != nil {
				return nil, err
			}
			digest.Write(bytes)
		}
		index := cachev3.GetResponseType(typeURL)
		snapshot.Resources[index] = cachev3.NewResources(hex.EncodeToString(digest.Sum(nil))[:16], items)
	}
	return snapshot, snapshot.Consistent()
}

func load(ctx context.Context, snapshots cachev3.SnapshotCache, path string) error {
	records, err := readRecords(path)
	if err != nil {
		return err
	}
	messages := map[string][]types.Resource{}
	for _, record := range records {
		message, err := anypb.UnmarshalNew(record, proto.UnmarshalOptions{})
		if err != nil {
			return err
		}
		messages[record.TypeUrl] = append(messages[record.TypeUrl], message)
	}
	emit("published %d", time.Now().UnixNano())
	snapshot, err := snapshotOf(messages)
	if err != nil {
		return err
	}
	return snapshots.SetSnapshot(ctx, group, snapshot)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address of the ADS server")
	flag.Parse()
	ctx := context.Background()
	snapshots := cachev3.NewSnapshotCache(true, oneGroup{}, nil)
	callbacks := serverv3.CallbackFuncs{
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			emitReply(id, req.ResponseNonce, req.ErrorDetail != nil, req.TypeUrl)
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
			emit("push %d %s %d %d", id, short(resp.TypeUrl), proto.Size(resp), time.Now().UnixNano())
		},
		StreamDeltaRequestFunc: func(id int64, req *discovery.DeltaDiscoveryRequest) error {
			emitReply(id, req.ResponseNonce, req.ErrorDetail != nil, req.TypeUrl)
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
			emit("push %d %s %d %d", id, short(resp.TypeUrl), proto.Size(resp), time.Now().UnixNano())
		},
	}
	server := serverv3.NewServer(ctx, snapshots, callbacks)
	grpcServer := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(1000000),
	)
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, server)
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		if err := grpcServer.Serve(listener); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}()
	emit("ready %d", listener.Addr().(*net.TCPAddr).Port)
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		command, argument, _ := strings.Cut(scanner.Text(), " ")
		if command != "load" {
			emit("error unknown command %q", command)
			continue
		}
		if err := load(ctx, snapshots, argument); err != nil {
			emit("error %s", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		emit("loaded")
	}
}
