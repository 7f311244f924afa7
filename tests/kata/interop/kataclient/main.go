// kataclient drives the agent's Kata protocol with containerd's own ttrpc client library.
//
// It reads a JSON script on stdin: a list of steps
//
//	{"id": "x", "service": "grpc.AgentService", "method": "WaitProcess",
//	 "payload": "<base64 protobuf>", "timeout_ms": 0, "background": false, "drain": false}
//	{"await": "x"}
//
// Calls run in order on ONE ttrpc client (one connection); a background call runs
// concurrently until an "await" step names it. A "drain" call is repeated until its response
// payload is empty (Read{Stdout,Stderr} at end of stream). It prints a JSON object mapping each
// id to {"code", "message", "payloads"} (the grpc status of the last call and every response
// payload, base64). The messages are encoded by the test; this program checks the transport.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"
)

// raw is a protobuf message whose encoding the caller already has.
type raw struct{ b []byte }

func (r *raw) Reset()                   { r.b = nil }
func (r *raw) String() string           { return fmt.Sprintf("raw(%d bytes)", len(r.b)) }
func (r *raw) ProtoMessage()            {}
func (r *raw) Marshal() ([]byte, error) { return r.b, nil }
func (r *raw) Unmarshal(b []byte) error { r.b = append([]byte(nil), b...); return nil }

type step struct {
	ID         string `json:"id"`
	Service    string `json:"service"`
	Method     string `json:"method"`
	Payload    []byte `json:"payload"`
	TimeoutMS  int    `json:"timeout_ms"`
	Background bool   `json:"background"`
	Drain      bool   `json:"drain"`
	Await      string `json:"await"`
}

type result struct {
	Code     uint32   `json:"code"`
	Message  string   `json:"message"`
	Payloads [][]byte `json:"payloads"`
}

func call(client *ttrpc.Client, s step) result {
	var out result
	for {
		ctx := context.Background()
		cancel := func() {}
		if s.TimeoutMS > 0 {
			ctx, cancel = context.WithTimeout(ctx, time.Duration(s.TimeoutMS)*time.Millisecond)
		}
		resp := &raw{}
		err := client.Call(ctx, s.Service, s.Method, &raw{b: s.Payload}, resp)
		cancel()
		if err != nil {
			st, _ := status.FromError(err)
			out.Code, out.Message = uint32(st.Code()), st.Message()
			return out
		}
		out.Payloads = append(out.Payloads, resp.b)
		if !s.Drain || len(resp.b) == 0 {
			return out
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kataclient SOCKET < script.json")
		os.Exit(2)
	}
	var steps []step
	if err := json.NewDecoder(os.Stdin).Decode(&steps); err != nil {
		fmt.Fprintln(os.Stderr, "bad script:", err)
		os.Exit(2)
	}
	conn, err := net.Dial("unix", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()

	results := map[string]result{}
	var mu sync.Mutex
	running := map[string]chan struct{}{}
	for _, s := range steps {
		if s.Await != "" {
			<-running[s.Await]
			continue
		}
		if s.Background {
			done := make(chan struct{})
			running[s.ID] = done
			go func(s step) {
				r := call(client, s)
				mu.Lock()
				results[s.ID] = r
				mu.Unlock()
				close(done)
			}(s)
			continue
		}
		r := call(client, s)
		mu.Lock()
		results[s.ID] = r
		mu.Unlock()
	}
	for id, done := range running {
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			fmt.Fprintln(os.Stderr, "background call never finished:", id)
			os.Exit(1)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		os.Exit(1)
	}
}
