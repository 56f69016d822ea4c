// Command reposerver serves one directory read-only over HTTP: the lab's flat apt
// repository (Packages, Release and the .deb files that `lab repo` caches). `lab`
// embeds this file, builds it as a static binary (CGO_ENABLED=0, standard library
// only) and runs it in the clusterflow-lab-repo container with the directory and the
// binary mounted read-only. It logs one line per request on stderr (`docker logs
// clusterflow-lab-repo`).
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	dir := flag.String("dir", "/srv/repo", "directory to serve")
	addr := flag.String("addr", ":8080", "listen address")
	flag.Parse()
	if fi, err := os.Stat(*dir); err != nil || !fi.IsDir() {
		log.Fatalf("reposerver: %s is not a directory (%v)", *dir, err)
	}
	files := http.FileServer(http.Dir(*dir))
	srv := &http.Server{
		Addr: *addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				http.Error(w, "read-only repository", http.StatusMethodNotAllowed)
				return
			}
			log.Printf("%s %s %s", r.RemoteAddr, r.Method, r.URL.Path)
			files.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	log.Printf("reposerver: serving %s on %s", *dir, *addr)
	log.Fatal(srv.ListenAndServe())
}
