package kubeletapi

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
)

// APIServerClientCN is the common name of the certificate the apiserver
// presents to kubelets (km certs: apiserver-kubelet-client).
const APIServerClientCN = "kube-apiserver-kubelet-client"

// RequireClientCerts makes cfg verify client certificates against the
// cluster's CA, as the kubelet's x509 authentication does with
// --client-ca-file. A client without a certificate still completes the
// handshake (so /healthz answers it); Authorize refuses it everything else.
func RequireClientCerts(cfg *tls.Config, caPEM []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no PEM certificate in the cluster CA given to the kubelet API")
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.VerifyClientCertIfGiven
	return nil
}

// Authorize serves h to the apiserver only: a client whose certificate
// was verified against the cluster CA and names the apiserver's kubelet
// client, or the system:masters group (the kubelet's webhook authorizer
// allows both). Others get 401 without a certificate and 403 with one, as
// the kubelet answers. /healthz stays open.
func Authorize(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			h.ServeHTTP(w, r)
			return
		}
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "Unauthorized: the kubelet API needs a client certificate signed by the cluster's CA", http.StatusUnauthorized)
			return
		}
		cert := r.TLS.VerifiedChains[0][0]
		if cert.Subject.CommonName != APIServerClientCN && !slices.Contains(cert.Subject.Organization, "system:masters") {
			http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=get, resource=nodes, subresource=proxy): only the apiserver reads logs here", cert.Subject.CommonName), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
