// Package certs makes the credentials of a km cluster once and reuses them
// after: a cluster CA, the apiserver's serving certificate, client
// certificates (admin in system:masters, the controller-manager, the
// scheduler, the executors) with their kubeconfigs, the service-account
// signing key, and the front-proxy CA and client certificate.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Options says what the certificates are for.
type Options struct {
	Dir string
	// APIServerURL is what kubeconfigs point at (https://127.0.0.1:6443).
	APIServerURL string
	// APIServerIPs and APIServerNames go into the serving certificate's
	// SANs (127.0.0.1, the first service IP, kubernetes.default.svc...).
	APIServerIPs   []net.IP
	APIServerNames []string
}

// Files names what Ensure writes in Dir.
type Files struct {
	Dir                                  string
	CACert, CAKey                        string
	APIServerCert, APIServerKey          string
	ServiceAccountKey, ServiceAccountPub string
	FrontProxyCACert, FrontProxyCAKey    string
	FrontProxyClientCert                 string
	FrontProxyClientKey                  string
	// Kubeconfigs by client: admin, controller-manager, scheduler,
	// executor.
	Kubeconfigs map[string]string
}

// Clients are the client identities a cluster needs: CN (user) and
// organisations (groups).
var Clients = map[string]struct {
	CN     string
	Groups []string
}{
	"admin": {"kubernetes-admin", []string{"system:masters"}},
	// km's endpoints controller runs with the controller-manager's own
	// identity and writes endpoints and slices, so it is a master too.
	"controller-manager": {"system:kube-controller-manager", []string{"system:masters"}},
	// The scheduler binds pods, writes events and manages Node objects
	// and leases: it gets system:masters until km ships a narrower role.
	"scheduler": {"system:km-scheduler", []string{"system:masters"}},
	// Executors act as kubelets (pod status, events, node leases).
	"executor": {"system:node:km-executor", []string{"system:nodes", "system:masters"}},
	// The apiserver's client certificate for the executors' kubelet API
	// (logs, exec); no kubeconfig is needed, but one does no harm.
	"apiserver-kubelet-client": {"kube-apiserver-kubelet-client", []string{"system:masters"}},
}

// ClientCert is the certificate file of a client of Clients.
func (f Files) ClientCert(client string) string { return filepath.Join(f.Dir, client+".crt") }

// ClientKey is the key file of a client of Clients.
func (f Files) ClientKey(client string) string { return filepath.Join(f.Dir, client+".key") }

// FilesIn names the files of a cert dir.
func FilesIn(dir string) Files {
	f := Files{
		Dir:    dir,
		CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		APIServerCert: filepath.Join(dir, "apiserver.crt"), APIServerKey: filepath.Join(dir, "apiserver.key"),
		ServiceAccountKey: filepath.Join(dir, "sa.key"), ServiceAccountPub: filepath.Join(dir, "sa.pub"),
		FrontProxyCACert: filepath.Join(dir, "front-proxy-ca.crt"), FrontProxyCAKey: filepath.Join(dir, "front-proxy-ca.key"),
		FrontProxyClientCert: filepath.Join(dir, "front-proxy-client.crt"), FrontProxyClientKey: filepath.Join(dir, "front-proxy-client.key"),
		Kubeconfigs: map[string]string{},
	}
	for name := range Clients {
		f.Kubeconfigs[name] = filepath.Join(dir, name+".kubeconfig")
	}
	return f
}

// Ensure makes what is missing in o.Dir and keeps what is there, so that a
// restarted cluster keeps its identity. Kubeconfigs are rewritten (the
// apiserver URL may change).
func Ensure(o Options) (Files, error) {
	if o.Dir == "" {
		return Files{}, errors.New("no directory for the certificates")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("cannot create %s: %v", o.Dir, err)
	}
	f := FilesIn(o.Dir)
	ca, caKey, err := loadOrMakeCA(f.CACert, f.CAKey, "km-cluster-ca")
	if err != nil {
		return f, err
	}
	names := append([]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}, o.APIServerNames...)
	ips := append([]net.IP{net.ParseIP("127.0.0.1")}, o.APIServerIPs...)
	if !exists(f.APIServerKey) || !servingCovers(f.APIServerCert, ca, names, ips) {
		// Missing, or made for other addresses (a new --apiserver-ip, or
		// a new CA): a serving certificate that clients refuse is of no
		// use, so it is made again; everything else is kept.
		if err := issue(ca, caKey, f.APIServerCert, f.APIServerKey, pkix.Name{CommonName: "kube-apiserver"}, names, ips, true); err != nil {
			return f, err
		}
	}
	if !exists(f.ServiceAccountKey) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return f, err
		}
		pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return f, err
		}
		if err := writePEM(f.ServiceAccountKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k), 0o600); err != nil {
			return f, err
		}
		if err := writePEM(f.ServiceAccountPub, "PUBLIC KEY", pub, 0o644); err != nil {
			return f, err
		}
	}
	fpCA, fpKey, err := loadOrMakeCA(f.FrontProxyCACert, f.FrontProxyCAKey, "km-front-proxy-ca")
	if err != nil {
		return f, err
	}
	if !exists(f.FrontProxyClientKey) || !servingCovers(f.FrontProxyClientCert, fpCA, nil, nil) {
		if err := issue(fpCA, fpKey, f.FrontProxyClientCert, f.FrontProxyClientKey, pkix.Name{CommonName: "front-proxy-client"}, nil, nil, false); err != nil {
			return f, err
		}
	}
	for name, id := range Clients {
		crt, key := filepath.Join(o.Dir, name+".crt"), filepath.Join(o.Dir, name+".key")
		if !exists(key) || !servingCovers(crt, ca, nil, nil) {
			if err := issue(ca, caKey, crt, key, pkix.Name{CommonName: id.CN, Organization: id.Groups}, nil, nil, false); err != nil {
				return f, err
			}
		}
		if o.APIServerURL != "" {
			if err := WriteKubeconfig(f.Kubeconfigs[name], o.APIServerURL, f.CACert, crt, key, name); err != nil {
				return f, err
			}
		}
	}
	return f, nil
}

// WriteKubeconfig writes a kubeconfig with the certificates embedded, so
// it can be copied elsewhere (the scheduler serves the executor's to the
// agents).
func WriteKubeconfig(path, server, caFile, certFile, keyFile, user string) error {
	read := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		return base64.StdEncoding.EncodeToString(b), err
	}
	ca, err := read(caFile)
	if err != nil {
		return err
	}
	crt, err := read(certFile)
	if err != nil {
		return err
	}
	key, err := read(keyFile)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: km\n  cluster:\n    server: %s\n    certificate-authority-data: %s\n", server, ca)
	fmt.Fprintf(&b, "users:\n- name: %s\n  user:\n    client-certificate-data: %s\n    client-key-data: %s\n", user, crt, key)
	fmt.Fprintf(&b, "contexts:\n- name: km\n  context:\n    cluster: km\n    user: %s\ncurrent-context: km\n", user)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// servingCovers says whether the certificate at path was signed by ca, is
// not expired, and is valid for every name and IP.
func servingCovers(path string, ca *x509.Certificate, names []string, ips []net.IP) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	p, _ := pem.Decode(b)
	if p == nil {
		return false
	}
	cert, err := x509.ParseCertificate(p.Bytes)
	if err != nil || cert.CheckSignatureFrom(ca) != nil || time.Now().After(cert.NotAfter) {
		return false
	}
	for _, n := range names {
		if cert.VerifyHostname(n) != nil {
			return false
		}
	}
	for _, ip := range ips {
		if cert.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	return true
}

func loadOrMakeCA(certPath, keyPath, cn string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if exists(certPath) && exists(keyPath) {
		cb, err := os.ReadFile(certPath)
		if err != nil {
			return nil, nil, err
		}
		kb, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, nil, err
		}
		cp, _ := pem.Decode(cb)
		kp, _ := pem.Decode(kb)
		if cp == nil || kp == nil {
			return nil, nil, fmt.Errorf("%s or %s is not PEM; delete both to make a new CA", certPath, keyPath)
		}
		cert, err := x509.ParseCertificate(cp.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", certPath, err)
		}
		key, err := x509.ParseECPrivateKey(kp.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", keyPath, err)
		}
		return cert, key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", kb, 0o600); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, nil
}

func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, certPath, keyPath string, subject pkix.Name, names []string, ips []net.IP, server bool) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if server {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usage,
		DNSNames:     names,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", kb, 0o600); err != nil {
		return err
	}
	return writePEM(certPath, "CERTIFICATE", der, 0o644)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return fmt.Errorf("cannot write %s: %v", path, err)
	}
	return os.Rename(tmp, path)
}

// IssueServing issues a serving certificate from the cluster CA of dir
// (the executors' kubelet API uses one per agent address).
func IssueServing(dir, certPath, keyPath, cn string, names []string, ips []net.IP) error {
	f := FilesIn(dir)
	ca, key, err := loadOrMakeCA(f.CACert, f.CAKey, "km-cluster-ca")
	if err != nil {
		return err
	}
	return issue(ca, key, certPath, keyPath, pkix.Name{CommonName: cn}, names, ips, true)
}
