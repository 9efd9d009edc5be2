#!/usr/bin/env bash
# Lab PKI with the openssl command line: a CA and leaf certificates that fail in one way each.
# Usage: pki.sh DIR
set -euo pipefail
dir=$1
mkdir -p "$dir" && cd "$dir"
[ -s good.crt ] && [ -s ca.crt ] && exit 0
rm -rf ./*
mkdir -p issued; : > index.txt; echo 2001 > serial
cat > ca.cnf <<CNF
[ ca ]
default_ca = lab
[ lab ]
dir = $dir
database = \$dir/index.txt
new_certs_dir = \$dir/issued
serial = \$dir/serial
certificate = \$dir/ca.crt
private_key = \$dir/ca.key
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[ anything ]
commonName = supplied
[ server ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
CNF
openssl req -x509 -new -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
  -subj "/CN=mailflow lab CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
when() { date -u -d "$1" +%Y%m%d%H%M%SZ; }
issue() { # file name start end
  openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" \
    -addext "subjectAltName=DNS:$2" 2>/dev/null
  openssl ca -batch -config ca.cnf -extensions server -in "$1.csr" -out "$1.crt" \
    -startdate "$3" -enddate "$4" -notext 2>/dev/null
  rm -f "$1.csr"
}
issue good mail.test "$(when '-1 day')" "$(when '+200 days')"
issue expired expired.test "$(when '-400 days')" "$(when '-20 days')"
issue wrongname other.example "$(when '-1 day')" "$(when '+200 days')"
issue soon soon.test "$(when '-80 days')" "$(when '+5 days')"
openssl req -x509 -new -newkey rsa:2048 -nodes -keyout selfsigned.key -out selfsigned.crt -days 200 \
  -subj "/CN=selfsigned.test" -addext "subjectAltName=DNS:selfsigned.test" 2>/dev/null
chmod 644 ./*.crt; chmod 600 ./*.key
