#!/usr/bin/env bash
# Makes the local PostgreSQL check cloud database tokens the way RDS (IAM) and Azure (Entra ID) do, for
# the cloud storage tests: TLS with a test CA, and two token-only roles whose password PostgreSQL hands to
# an LDAP simple bind on 127.0.0.1:3899. The tests run the LDAP side (test/support/token-verifier.ts),
# which checks each token against the credentials the fake Connect issued.
# Why LDAP and not PAM (pam_exec): pam_exec copies the password into a 512-byte buffer, and an RDS token
# signed with STS credentials is longer (the session token alone is several hundred characters).
# Needs root and a running cluster. Idempotent. Writes /var/lib/mlflowctl-test/token-auth.json, which the
# tests read (MLFLOWCTL_TEST_TOKEN_AUTH overrides the path).
set -euo pipefail
cd "$(dirname "$0")/.."
state=/var/lib/mlflowctl-test
pgver=$(ls /usr/lib/postgresql | sort -V | tail -1)
confdir=/etc/postgresql/$pgver/main
iam_user=mlflow_iam
entra_user=mlflow-entra@contoso.example
region=us-east-1
ldap_port=3899

install -d -m 0755 "$state"
if [ ! -f "$state/ca.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mlflowctl test CA" \
    -keyout "$state/ca.key" -out "$state/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$state/server.key" -out "$state/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$state/san.ext"
  openssl x509 -req -in "$state/server.csr" -CA "$state/ca.pem" -CAkey "$state/ca.key" -CAcreateserial \
    -days 3650 -extfile "$state/san.ext" -out "$state/server.pem" 2>/dev/null
  chown postgres "$state/server.key" && chmod 0600 "$state/server.key" "$state/ca.key"
fi

# Token roles authenticate only over TLS, through the verifier, and are rejected without TLS, as on RDS.
hba=$confdir/pg_hba.conf
sed -i '/# mlflowctl-token-auth begin/,/# mlflowctl-token-auth end/d' "$hba"
ldap="ldap ldapserver=127.0.0.1 ldapport=$ldap_port ldapprefix=\"uid=\" ldapsuffix=\",ou=mlflowctl-tokens\""
block="# mlflowctl-token-auth begin
hostssl all $iam_user,\"$entra_user\" 127.0.0.1/32 $ldap
hostssl all $iam_user,\"$entra_user\" ::1/128 $ldap
host all $iam_user,\"$entra_user\" 0.0.0.0/0 reject
host all $iam_user,\"$entra_user\" ::/0 reject
# mlflowctl-token-auth end"
printf '%s\n%s\n' "$block" "$(cat "$hba")" > "$hba"

psql_su() { su postgres -c "psql -qtAX -c \"$1\""; }
psql_su "ALTER SYSTEM SET ssl = on" >/dev/null
psql_su "ALTER SYSTEM SET ssl_cert_file = '$state/server.pem'" >/dev/null
psql_su "ALTER SYSTEM SET ssl_key_file = '$state/server.key'" >/dev/null
psql_su "SELECT pg_reload_conf()" >/dev/null
for role in "$iam_user" "$entra_user"; do
  psql_su "SELECT 1 FROM pg_roles WHERE rolname='$role'" | grep -q 1 || psql_su "CREATE ROLE \\\"$role\\\" LOGIN" >/dev/null
done

cat > "$state/token-auth.json" <<JSON
{"caFile": "$state/ca.pem", "host": "localhost", "port": 5432, "region": "$region",
 "iamUser": "$iam_user", "entraUser": "$entra_user", "verifierPort": $ldap_port}
JSON
echo "PostgreSQL checks RDS IAM and Entra tokens for $iam_user and $entra_user through the test verifier on 127.0.0.1:$ldap_port."
