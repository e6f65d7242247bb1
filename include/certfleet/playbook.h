/* playbook.h - load and validate a playbook (JSON).
 *
 * A playbook describes one certificate, its CA and the fleet it is deployed
 * to.  playbook_load() either returns a fully validated, defaults-applied
 * struct or fails with CF_ERR_CONFIG and a message of the form
 *     "FILE:LINE: KEY.PATH: what is wrong"
 * e.g. "web.json:14: nodes[2].host: contains whitespace or control
 * characters".  Nothing outside this module sees the playbook's JSON. */
#ifndef CERTFLEET_PLAYBOOK_H
#define CERTFLEET_PLAYBOOK_H

#include <stdbool.h>
#include <stddef.h>

#include "certfleet/err.h"
#include "certfleet/starttls.h"

typedef enum {
	CF_KEY_EC_P256 = 0, /* "ec-p256" (default) */
	CF_KEY_EC_P384,     /* "ec-p384" */
	CF_KEY_RSA_2048,    /* "rsa-2048" */
	CF_KEY_RSA_3072,    /* "rsa-3072" */
	CF_KEY_RSA_4096,    /* "rsa-4096" */
} cf_key_type_t;

typedef enum {
	CF_CONTENT_CERT = 0,  /* "cert": leaf only */
	CF_CONTENT_CHAIN,     /* "chain": intermediates only */
	CF_CONTENT_FULLCHAIN, /* "fullchain": leaf + intermediates */
	CF_CONTENT_PRIVKEY,   /* "privkey" */
	CF_CONTENT_COMBINED,  /* "combined": fullchain then key (HAProxy) */
} cf_content_t;

struct cf_file_spec {
	char *path; /* absolute, validated charset, no ".." */
	cf_content_t content;
	unsigned mode;   /* default 0600 for privkey/combined, else 0644 */
	char *owner;     /* NULL = leave as created */
	char *group;     /* NULL = leave as created */
	bool shared_dir; /* another account may write the directory: the
			    stage script only uses link-safe steps there
			    instead of refusing it */
};

/* One place a client reaches the certificate: a TCP port, with the
 * plaintext dialogue spoken before TLS (STARTTLS_NONE: implicit TLS). */
struct cf_endpoint {
	unsigned port;
	starttls_proto_t starttls;
};

struct cf_node {
	char *name;    /* unique; [A-Za-z0-9._-], no leading '-' or '.' */
	char *host;    /* hostname, IPv4 or IPv6 literal */
	unsigned port; /* ssh port, node override or ssh.port */
	char *user;    /* node override or ssh.user */
};

struct cf_playbook {
	char *path; /* the file it was loaded from */

	struct {
		char *name;     /* store name; as a node name, not
				   "lock" or "accounts" */
		char **domains; /* n_domains >= 1 */
		size_t n_domains;
		cf_key_type_t key_type;
	} cert;

	struct {
		char *user;     /* default "root" */
		unsigned port;  /* default 22 */
		char *identity; /* absolute path, required */
		char *known_hosts; /* absolute path; default /etc/ssh/ssh_known_hosts */
		unsigned connect_timeout; /* seconds, default 10 */
		unsigned timeout; /* seconds, per-node operation, default 60 */
	} ssh;

	struct {
		struct cf_file_spec *files; /* n_files >= 1 */
		size_t n_files;
		char *check;   /* shell command run on the node; NULL = none */
		char *reload;  /* shell command; NULL = none */
		char *webroot; /* absolute dir for http-01 files; NULL = none */
		bool keep_previous; /* default true; false: a verified node's
				       .NAME.certfleet-prev backups of key files
				       are removed */
		/* HAProxy hitless mode: the certificate goes live through
		 * HAProxy's runtime API (haproxy.h) instead of a reload.
		 * port 0 = not used.  cert is the path of the one
		 * deploy.files entry (content combined) HAProxy loaded;
		 * reload is then NULL (validated). */
		struct {
			unsigned port; /* at 127.0.0.1 on the node */
			char *cert;    /* == files[file].path */
			size_t file;   /* index in files */
		} haproxy_api;
	} deploy;

	struct {
		unsigned port; /* endpoints[0].port (verify.port is the
				  one-endpoint shorthand); default 443 */
		struct cf_endpoint *endpoints; /* n_endpoints >= 1, distinct
						  ports */
		size_t n_endpoints;
		char *server_name; /* the first SNI checked; default the first
				      non-wildcard domain */
		char **names;      /* verify.names: sample names for
				      wildcards, each covered by
				      certificate.domains; may be NULL */
		size_t n_names;
		char *ca_bundle; /* absolute path of PEM trust anchors;
				    NULL = the system store */
		unsigned
		    timeout; /* seconds to wait for the new cert, default 10 */
	} verify;

	struct {
		unsigned concurrency; /* default 32, 1..1024 */
		unsigned canary;      /* default 1, 0 disables, up to 1000 */
		unsigned canary_failures; /* distinct canaries failing check/
					     reload/verify that stop the rollout;
					     default 2 (one failure may be the
					     node's own, not the recipe's) */
		unsigned max_failures; /* stop after this many check/reload/verify
					  failures; 0 = no limit (default) */
	} rollout;

	struct {
		unsigned keep_versions; /* newest stored versions that keep
					   their private key; default 3, 2..1000
					   (rollback needs the previous one) */
	} store;

	struct {
		char *directory; /* https URL; NULL = no ACME (deploy only) */
		char **contact; /* "mailto:..." URIs, NULL-terminated or NULL */
		size_t n_contact;
		char *challenge; /* "http-01" (default) or "dns-01" */
		char *dns_hook;  /* absolute path, required for dns-01 */
		char *ca_bundle; /* absolute path; NULL = system store */
		double renew_before_days; /* 0 = auto (one third of lifetime) */
		char *preferred_chain;    /* issuer CN; NULL = default chain */
		char *profile;            /* NULL = CA default */
		bool reuse_key;           /* default false */
		char *eab_kid;            /* both or neither */
		char *eab_hmac_key;       /* base64url; secret, wiped on free.
					     From acme.eab.hmac_key, or from
					     hmac_key_file once
					     playbook_load_secrets ran */
		char *eab_hmac_key_file;  /* absolute path or NULL */
		unsigned timeout; /* seconds for a whole issuance, default 300 */
	} acme;

	struct {
		char **webhooks; /* https/http URLs, n_webhooks may be 0 */
		size_t n_webhooks;
		char *command;    /* absolute path or NULL */
		double warn_days; /* 0 = auto */
	} notify;

	struct cf_node *nodes; /* n_nodes >= 1, names unique */
	size_t n_nodes;
};

/* Parse and validate. *out owned by caller (playbook_free).  A playbook
 * holding acme.eab.hmac_key that group or others may access is refused
 * (CF_ERR_CONFIG naming the file and its mode). */
int playbook_load(const char *path, struct cf_playbook **out, cf_err_t *err);
/* Same, from memory; `name` is used in messages in place of a path. */
int playbook_load_buf(const char *name, const char *buf, size_t len,
                      struct cf_playbook **out, cf_err_t *err);
void playbook_free(struct cf_playbook *pb);
/* Read the secrets a playbook names by path (acme.eab.hmac_key_file) into
 * the playbook.  Only commands that talk to the CA (renew) and validate
 * call it, so status, verify and check never need access to a secret.
 * The file must be a regular file only its owner may access (as ssh(1)
 * treats an identity): CF_ERR_CONFIG naming the file and its mode
 * otherwise.  No-op without a key file. */
int playbook_load_secrets(struct cf_playbook *pb, cf_err_t *err);

/* Every SNI name verify asks for, in order: verify.server_name, then each
 * non-wildcard certificate.domains entry, then verify.names, without
 * repeats (compared case-insensitively).  *out (caller frees the vector
 * only; the strings are borrowed from pb) has *n >= 1 entries. */
int playbook_verify_names(const struct cf_playbook *pb, const char ***out,
                          size_t *n, cf_err_t *err);

/* Find a node by name; NULL if absent. Borrowed pointer. */
const struct cf_node *
playbook_node(const struct cf_playbook *pb, const char *name);

#endif
