package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pem.Decode(b)
	if p == nil {
		t.Fatalf("%s: not PEM", path)
	}
	c, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureMakesOnceAndKeeps(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, APIServerURL: "https://127.0.0.1:6443", APIServerIPs: []net.IP{net.ParseIP("10.96.0.1")}}
	f, err := Ensure(o)
	if err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, f.CACert)
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	serving := readCert(t, f.APIServerCert)
	for _, host := range []string{"127.0.0.1", "10.96.0.1", "kubernetes.default.svc", "localhost"} {
		if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
	admin := readCert(t, f.ClientCert("admin"))
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate: %v", err)
	}
	if len(admin.Subject.Organization) != 1 || admin.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin groups %v", admin.Subject.Organization)
	}
	fp := readCert(t, f.FrontProxyClientCert)
	if fp.Subject.CommonName != "front-proxy-client" || fp.CheckSignatureFrom(readCert(t, f.FrontProxyCACert)) != nil {
		t.Errorf("front-proxy client %v", fp.Subject)
	}
	for _, p := range []string{f.ServiceAccountKey, f.ServiceAccountPub} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	kc, err := clientcmd.LoadFromFile(f.Kubeconfigs["admin"])
	if err != nil {
		t.Fatal(err)
	}
	if kc.Clusters["km"].Server != "https://127.0.0.1:6443" || !bytes.Contains(kc.Clusters["km"].CertificateAuthorityData, []byte("CERTIFICATE")) {
		t.Fatalf("kubeconfig %+v", kc.Clusters["km"])
	}

	// Again, with another apiserver URL: everything is kept, the
	// kubeconfigs follow the URL.
	before := map[string][]byte{}
	for _, p := range []string{f.CACert, f.CAKey, f.APIServerCert, f.ClientCert("admin"), f.ServiceAccountKey, f.FrontProxyCACert} {
		before[p], _ = os.ReadFile(p)
	}
	o.APIServerURL = "https://127.0.0.1:7443"
	if _, err := Ensure(o); err != nil {
		t.Fatal(err)
	}
	for p, b := range before {
		if now, _ := os.ReadFile(p); !bytes.Equal(now, b) {
			t.Errorf("%s was made again", p)
		}
	}
	if kc, _ := clientcmd.LoadFromFile(f.Kubeconfigs["admin"]); kc.Clusters["km"].Server != "https://127.0.0.1:7443" {
		t.Errorf("kubeconfig server %s", kc.Clusters["km"].Server)
	}

	// A new address for the apiserver: only the serving certificate is
	// made again, by the same CA.
	o.APIServerIPs = append(o.APIServerIPs, net.ParseIP("192.0.2.10"))
	if _, err := Ensure(o); err != nil {
		t.Fatal(err)
	}
	serving = readCert(t, f.APIServerCert)
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: "192.0.2.10"}); err != nil {
		t.Errorf("new serving certificate: %v", err)
	}
	if now, _ := os.ReadFile(f.CACert); !bytes.Equal(now, before[f.CACert]) {
		t.Error("the CA was made again")
	}
}

func TestEnsureRefusesABrokenCA(t *testing.T) {
	dir := t.TempDir()
	f := FilesIn(dir)
	os.WriteFile(f.CACert, []byte("junk"), 0o600)
	os.WriteFile(f.CAKey, []byte("junk"), 0o600)
	_, err := Ensure(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "delete both") {
		t.Fatalf("got %v", err)
	}
}
