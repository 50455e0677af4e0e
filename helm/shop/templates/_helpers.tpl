{{/*
Helpers of the shop chart. Every per-service template ranges over
"shop.services" and takes the service's facts from "shop.facts".
*/}}

{{- define "shop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name, at most 29 characters: a StatefulSet name
("<prefix>-productinfo-postgresql") may have at most 52, a CloudNativePG
Cluster name ("<prefix>-productinfo-db") at most 50. */}}
{{- define "shop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 29 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 29 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 29 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "shop.services" -}}productinfo order storefront{{- end -}}

{{/*
What differs between the services, as JSON: the health service name the
readiness probe asks for, whom the service calls, who calls it, whether it
issues tokens, and whose tokens it accepts (TRUSTED_ISSUERS).
*/}}
{{- define "shop.facts" -}}
{{- $issuers := "/etc/shop/issuers" -}}
{{- $facts := dict
  "productinfo" (dict "health" "ecommerce.ProductInfo" "calls" (list) "callers" (list "order" "storefront") "signs" false
                      "trusted" (printf "storefront:customer+admin+service=%s/storefront.pem,order:service=%s/order.pem" $issuers $issuers))
  "order"       (dict "health" "ecommerce.OrderManagement" "calls" (list "productinfo") "callers" (list "storefront") "signs" true
                      "trusted" (printf "storefront:customer+admin=%s/storefront.pem" $issuers))
  "storefront"  (dict "health" "ecommerce.Storefront" "calls" (list "productinfo" "order") "callers" (list) "signs" true
                      "trusted" (printf "storefront:customer+admin=%s/storefront.pem" $issuers))
-}}
{{- index $facts . | toJson -}}
{{- end -}}

{{- define "shop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels. Args: (dict "root" $ "component" "productinfo") */}}
{{- define "shop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shop.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels. Args: (dict "root" $ "component" "productinfo") */}}
{{- define "shop.labels" -}}
{{ include "shop.selectorLabels" . }}
app.kubernetes.io/part-of: shop
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "shop.chart" .root }}
{{- end -}}

{{/* Labels of every pod of the release (the default-deny NetworkPolicy selects these). */}}
{{- define "shop.releaseSelector" -}}
app.kubernetes.io/name: {{ include "shop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Image of a service. Args: (dict "root" $ "svc" "order") */}}
{{- define "shop.image" -}}
{{- $v := index .root.Values .svc -}}
{{- $repo := $v.image.repository | default (printf "%s/%s" (trimSuffix "/" .root.Values.image.registry) .svc) -}}
{{- printf "%s:%s" $repo (.root.Values.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* "20s" -> 20 (the schema allows whole seconds only). */}}
{{- define "shop.seconds" -}}
{{- trimSuffix "s" . | int -}}
{{- end -}}

{{/* ---------------------------------------------------------------- secrets

Where each key and password comes from:
  existing   a Secret the admin made (existingSecret values);
  values     a Secret the chart renders from the values;
  generated  a Secret the Job in secrets-job.yaml makes once, on the first
             install, and never replaces (a pre-install/pre-upgrade hook).
Nothing random and no `lookup` at render time: `helm template` renders the
same objects every time, so GitOps tools (Argo CD, Flux) see no drift.
*/}}

{{/* Args: (dict "root" $ "issuer" "storefront") */}}
{{- define "shop.signingKeySource" -}}
{{- $k := index .root.Values.keys .issuer -}}
{{- if $k.existingSecret }}existing{{ else if $k.privateKey }}values{{ else }}generated{{ end -}}
{{- end -}}

{{/* Where a database's credentials come from; "operator" for a
CloudNativePG Cluster, whose operator makes them (<cluster>-app).
Args: (dict "root" $ "svc" "order") */}}
{{- define "shop.dbSecretSource" -}}
{{- $db := (index .root.Values .svc).database -}}
{{- $mode := include "shop.dbMode" . -}}
{{- if eq $mode "embedded" -}}
{{- if $db.internal.existingSecret }}existing{{ else if $db.internal.password }}values{{ else }}generated{{ end -}}
{{- else if eq $mode "cloudnativepg" -}}
operator
{{- else -}}
{{- if $db.external.existingSecret }}existing{{ else }}values{{ end -}}
{{- end -}}
{{- end -}}

{{- define "shop.adminSecretSource" -}}
{{- $a := .Values.storefront.admin -}}
{{- if $a.existingSecret }}existing{{ else if $a.password }}values{{ else }}generated{{ end -}}
{{- end -}}

{{- define "shop.adminSecret" -}}
{{- .Values.storefront.admin.existingSecret | default (printf "%s-storefront-admin" (include "shop.fullname" .)) -}}
{{- end -}}

{{- define "shop.adminSecretKey" -}}
{{- if .Values.storefront.admin.existingSecret }}{{ .Values.storefront.admin.existingSecretKey }}{{ else }}password{{ end -}}
{{- end -}}

{{- define "shop.signingKeySecret" -}}
{{- $k := index .root.Values.keys .issuer -}}
{{- $k.existingSecret | default (printf "%s-%s-signing-key" (include "shop.fullname" .root) .issuer) -}}
{{- end -}}

{{- define "shop.signingKeySecretKey" -}}
{{- $k := index .root.Values.keys .issuer -}}
{{- if $k.existingSecret }}{{ $k.existingSecretKey }}{{ else }}private.pem{{ end -}}
{{- end -}}

{{/*
The ConfigMap with every issuer's public key (storefront.pem, order.pem) the
verifiers mount: the admin's (keys.existingPublicKeysConfigMap); else, when a
signing key is generated, "<fullname>-public-keys", made by the secrets Job
from the keys it holds (and the publicKey values of the others); else
"<fullname>-issuers", rendered by the chart from the publicKey values. Two
names, so that neither Helm nor the Job ever meets an object the other made.
*/}}
{{- define "shop.issuersConfigMap" -}}
{{- if .Values.keys.existingPublicKeysConfigMap -}}
{{- .Values.keys.existingPublicKeysConfigMap -}}
{{- else if include "shop.generatesKeys" . -}}
{{- printf "%s-public-keys" (include "shop.fullname" .) -}}
{{- else -}}
{{- printf "%s-issuers" (include "shop.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Is a signing key generated? */}}
{{- define "shop.generatesKeys" -}}
{{- range $issuer := list "storefront" "order" }}
{{- if eq (include "shop.signingKeySource" (dict "root" $ "issuer" $issuer)) "generated" }}true{{ end }}
{{- end }}
{{- end -}}

{{/*
What the secrets Job makes, one object a line (secrets.sh reads it):
  password SECRET KEY...          random passwords
  key ISSUER SECRET               the issuer's Ed25519 key (private.pem)
  public-keys CONFIGMAP ISSUER... every issuer's public key
Empty: every key and password is supplied, and there is no Job.
*/}}
{{- define "shop.secretsPlan" -}}
{{- range $svc := splitList " " (include "shop.services" .) }}
{{- if eq (include "shop.dbSecretSource" (dict "root" $ "svc" $svc)) "generated" }}
password {{ include "shop.dbSecret" (dict "root" $ "svc" $svc) }} password postgres-password
{{- end }}
{{- end }}
{{- if eq (include "shop.adminSecretSource" .) "generated" }}
password {{ include "shop.adminSecret" . }} password
{{- end }}
{{- range $issuer := list "storefront" "order" }}
{{- if eq (include "shop.signingKeySource" (dict "root" $ "issuer" $issuer)) "generated" }}
key {{ $issuer }} {{ include "shop.signingKeySecret" (dict "root" $ "issuer" $issuer) }}
{{- end }}
{{- end }}
{{- if and (include "shop.generatesKeys" .) (not .Values.keys.existingPublicKeysConfigMap) }}
public-keys {{ include "shop.issuersConfigMap" . }} storefront order
{{- end }}
{{- end -}}

{{/* Annotations of the secrets Job's hooks. Args: the hook weight. */}}
{{- define "shop.secretsHook" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ . | quote }}
{{- end -}}

{{/* ---------------------------------------------------------------- databases

Where each service's database runs ("shop.dbMode"): its database.mode, else
postgresql.mode; "internal" is the old name of "embedded".
  embedded       a one-replica StatefulSet of this release (postgresql.yaml);
  cloudnativepg  a CloudNativePG Cluster (cloudnativepg.yaml), run by its operator;
  external       a server the admin runs.
Every helper here takes (dict "root" $ "svc" "order"), and those that name
the Secret also "secret" (SECRET-NAME).
*/}}

{{- define "shop.dbMode" -}}
{{- $mode := (index .root.Values .svc).database.mode | default .root.Values.postgresql.mode -}}
{{- ternary "embedded" $mode (eq $mode "internal") -}}
{{- end -}}

{{- define "shop.dbEmbedded" -}}
{{- if eq (include "shop.dbMode" .) "embedded" }}true{{ end -}}
{{- end -}}

{{- define "shop.dbCnpg" -}}
{{- if eq (include "shop.dbMode" .) "cloudnativepg" }}true{{ end -}}
{{- end -}}

{{/* The CloudNativePG Cluster of a service. The operator names after it the
Services <cluster>-rw (the primary), -ro (the replicas) and -r, the Secret
<cluster>-app with the owner's credentials and <cluster>-ca with the CA of
the servers' certificates (ca.crt), and labels its pods cnpg.io/cluster. */}}
{{- define "shop.cnpgCluster" -}}
{{- printf "%s-%s-db" (include "shop.fullname" .root) .svc -}}
{{- end -}}

{{/* Where the database files are mounted: the password, and with
CloudNativePG the servers' CA (ca.crt). */}}
{{- define "shop.dbDir" -}}/etc/shop/db{{- end -}}

{{/* The URL of a CloudNativePG Service ("service": rw or ro): TLS, the
server's certificate verified against the Cluster's CA and its name (the
operator's certificates carry <cluster>-rw, -ro, -r and their longer forms). */}}
{{- define "shop.cnpgUrl" -}}
{{- $v := index .root.Values .svc -}}
{{- printf "postgres://%s@%s-%s:5432/%s?sslmode=verify-full&sslrootcert=%s/ca.crt" $v.database.internal.user (include "shop.cnpgCluster" .) .service $v.database.internal.database (include "shop.dbDir" .) -}}
{{- end -}}

{{/* The Secret with the service's database credentials. */}}
{{- define "shop.dbSecret" -}}
{{- $db := (index .root.Values .svc).database -}}
{{- $name := printf "%s-%s-db" (include "shop.fullname" .root) .svc -}}
{{- $mode := include "shop.dbMode" . -}}
{{- if eq $mode "embedded" -}}
{{- $db.internal.existingSecret | default $name -}}
{{- else if eq $mode "cloudnativepg" -}}
{{- printf "%s-app" (include "shop.cnpgCluster" .) -}}
{{- else -}}
{{- $db.external.existingSecret | default $name -}}
{{- end -}}
{{- end -}}

{{/* Key of the password in that Secret; empty when the password is in the URL. */}}
{{- define "shop.dbPasswordKey" -}}
{{- $db := (index .root.Values .svc).database -}}
{{- if ne (include "shop.dbMode" .) "external" -}}
password
{{- else if $db.external.existingSecret -}}
{{- $db.external.passwordKey -}}
{{- else if $db.external.password -}}
password
{{- end -}}
{{- end -}}

{{- define "shop.dbUrlKey" -}}
{{- $db := (index .root.Values .svc).database -}}
{{- if $db.external.existingSecret }}{{ $db.external.urlKey }}{{ else }}url{{ end -}}
{{- end -}}

{{/* Key of an external database's replica URL in that Secret; empty: none. */}}
{{- define "shop.dbReadUrlKey" -}}
{{- $db := (index .root.Values .svc).database -}}
{{- if eq (include "shop.dbMode" .) "external" -}}
{{- if $db.external.existingSecret -}}
{{- $db.external.readUrlKey -}}
{{- else if $db.external.readUrl -}}
read-url
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "shop.postgresName" -}}
{{- printf "%s-%s-postgresql" (include "shop.fullname" .root) .svc -}}
{{- end -}}

{{/* Secret data of the service's database credentials when the values hold them. */}}
{{- define "shop.dbSecretData" -}}
{{- $db := (index .root.Values .svc).database -}}
{{- if include "shop.dbEmbedded" . -}}
password: {{ $db.internal.password | b64enc | quote }}
postgres-password: {{ $db.internal.postgresPassword | b64enc | quote }}
{{- else -}}
url: {{ $db.external.url | b64enc | quote }}
{{- if $db.external.password }}
password: {{ $db.external.password | b64enc | quote }}
{{- end }}
{{- if $db.external.readUrl }}
read-url: {{ $db.external.readUrl | b64enc | quote }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
Database environment of `serve`, `check-config` and `migrate`: DATABASE_URL
(plain for the embedded server and a CloudNativePG Cluster's -rw Service,
from the Secret for an external one) and DATABASE_PASSWORD_FILE when the
password is a separate key.
*/}}
{{- define "shop.dbEnv" -}}
{{- $v := index .root.Values .svc -}}
{{- $mode := include "shop.dbMode" . -}}
{{- if eq $mode "embedded" }}
- name: DATABASE_URL
  value: {{ printf "postgres://%s@%s:5432/%s" $v.database.internal.user (include "shop.postgresName" .) $v.database.internal.database | quote }}
{{- else if eq $mode "cloudnativepg" }}
- name: DATABASE_URL
  value: {{ include "shop.cnpgUrl" (dict "root" .root "svc" .svc "service" "rw") | quote }}
{{- else }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ include "shop.dbUrlKey" . }}
{{- end }}
{{- if include "shop.dbPasswordKey" . }}
- name: DATABASE_PASSWORD_FILE
  value: {{ include "shop.dbDir" . }}/password
{{- end }}
- name: DB_MAX_CONNECTIONS
  value: {{ $v.dbMaxConnections | quote }}
{{- end -}}

{{/*
The read-only replica of `serve` (productinfo.readReplicas): DATABASE_READ_URL
and DATABASE_READ_MAX_LAG, with the password of DATABASE_PASSWORD_FILE. With
CloudNativePG the Cluster's -ro Service (only with more than one instance:
with one, -ro has no endpoints); with an external database the replica URL
of its Secret; an embedded database has no replica. Never for `migrate`,
which only writes.
*/}}
{{- define "shop.dbReadEnv" -}}
{{- $v := index .root.Values .svc -}}
{{- $mode := include "shop.dbMode" . -}}
{{- $readKey := include "shop.dbReadUrlKey" . -}}
{{- with $v.readReplicas }}
{{- if .enabled }}
{{- if and (eq $mode "cloudnativepg") (gt (int $.root.Values.postgresql.cloudnativepg.instances) 1) }}
- name: DATABASE_READ_URL
  value: {{ include "shop.cnpgUrl" (dict "root" $.root "svc" $.svc "service" "ro") | quote }}
- name: DATABASE_READ_MAX_LAG
  value: {{ .maxLag | quote }}
{{- else if $readKey }}
- name: DATABASE_READ_URL
  valueFrom:
    secretKeyRef:
      name: {{ $.secret }}
      key: {{ $readKey }}
- name: DATABASE_READ_MAX_LAG
  value: {{ .maxLag | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The volume with the database password (and with CloudNativePG the
Cluster's CA), if there is one: the whole directory, never a subPath, so
that a renewed CA reaches the file. */}}
{{- define "shop.dbVolume" -}}
{{- if include "shop.dbCnpg" . }}
- name: db
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "shop.cnpgCluster" . }}-app
          items:
            - key: password
              path: password
      - secret:
          name: {{ include "shop.cnpgCluster" . }}-ca
          items:
            - key: ca.crt
              path: ca.crt
{{- else if include "shop.dbPasswordKey" . }}
- name: db
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
    items:
      - key: {{ include "shop.dbPasswordKey" . }}
        path: password
{{- end }}
{{- end -}}

{{- define "shop.dbVolumeMount" -}}
{{- if include "shop.dbPasswordKey" . }}
- name: db
  mountPath: {{ include "shop.dbDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- TLS

Each service's TLS Secret (tls.crt, tls.key, ca.crt: cert-manager's layout)
is mounted as a directory at "shop.tlsDir"; TLS_CERT_FILE, TLS_KEY_FILE and
TLS_CA_FILE name its files. Its certificate carries the service's identity,
a URI SAN spiffe://<trustDomain>/ns/<namespace>/sa/<service> with the
logical name (never the release-prefixed one), and DNS SANs: the logical
name, which callers verify whatever address they dial, and every name of its
two Services.
*/}}

{{- define "shop.tlsDir" -}}/etc/shop/tls{{- end -}}

{{/* Args: (dict "root" $ "svc" "order") */}}
{{- define "shop.tlsSecret" -}}
{{- index .root.Values.tls.secrets .svc | default (printf "%s-%s-tls" (include "shop.fullname" .root) .svc) -}}
{{- end -}}

{{/* Args: (dict "root" $ "svc" "order") */}}
{{- define "shop.spiffeId" -}}
{{- printf "spiffe://%s/ns/%s/sa/%s" .root.Values.tls.trustDomain .root.Release.Namespace .svc -}}
{{- end -}}

{{/* The DNS SANs of a service's certificate, as JSON. Args: (dict "root" $ "svc" "order") */}}
{{- define "shop.tlsDnsNames" -}}
{{- $ns := .root.Release.Namespace -}}
{{- $domain := .root.Values.tls.clusterDomain -}}
{{- $names := list .svc -}}
{{- range $service := list (printf "%s-%s" (include "shop.fullname" .root) .svc) (printf "%s-%s-headless" (include "shop.fullname" .root) .svc) -}}
{{- $names = concat $names (list $service (printf "%s.%s" $service $ns) (printf "%s.%s.svc" $service $ns) (printf "%s.%s.svc.%s" $service $ns $domain)) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* Does the kubelet probe the plaintext health-only port? (TLS on the gRPC
port, and native probes, which cannot speak TLS.) */}}
{{- define "shop.healthPort" -}}
{{- if and .Values.tls.enabled (eq .Values.probes.type "grpc") }}true{{ end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- probes */}}

{{/*
One probe. Args: (dict "root" $ "svc" "order" "kind" "startup"|"readiness"|"liveness")
exec: grpc_health_probe on the gRPC port, with the service's own certificate
and the name callers verify when TLS is on; grpc (native): the gRPC port, or
with TLS the plaintext health-only port.
*/}}
{{- define "shop.probe" -}}
{{- $p := index .root.Values.probes .kind -}}
{{- $facts := include "shop.facts" .svc | fromJson -}}
{{- $service := ternary $facts.health "liveness" (eq .kind "readiness") -}}
{{- $tls := include "shop.tlsDir" . -}}
{{- if eq .root.Values.probes.type "grpc" }}
grpc:
  port: {{ ternary .root.Values.ports.health .root.Values.ports.grpc (eq (include "shop.healthPort" .root) "true") }}
  service: {{ $service }}
{{- else }}
exec:
  command:
    - /usr/local/bin/grpc_health_probe
    - -addr=127.0.0.1:{{ .root.Values.ports.grpc }}
    - -service={{ $service }}
    - -connect-timeout={{ sub $p.timeoutSeconds 1 | max 1 }}s
    - -rpc-timeout={{ sub $p.timeoutSeconds 1 | max 1 }}s
    {{- if .root.Values.tls.enabled }}
    - -tls
    - -tls-ca-cert={{ $tls }}/ca.crt
    - -tls-client-cert={{ $tls }}/tls.crt
    - -tls-client-key={{ $tls }}/tls.key
    - -tls-server-name={{ .svc }}
    {{- end }}
{{- end }}
periodSeconds: {{ $p.periodSeconds }}
timeoutSeconds: {{ $p.timeoutSeconds }}
failureThreshold: {{ $p.failureThreshold }}
{{- end -}}

{{/* ---------------------------------------------------------------- migrations */}}

{{/*
When the migration Job of a service runs:
- external database: a pre-install,pre-upgrade hook (the server already exists);
- in-cluster database (embedded StatefulSet or CloudNativePG Cluster), first
  install: an ordinary resource created with the StatefulSet or Cluster (a
  pre-install hook would run before the database exists, and a post-install
  hook would never run under `helm install --wait`, which waits for pods that
  stay unready until the schema exists); `migrate` waits for the database and
  the Job retries (with CloudNativePG longer, see migrate-job.yaml);
- in-cluster database, upgrade: a pre-upgrade hook.
Returns the hook annotation value, or "" for an ordinary resource.
*/}}
{{- define "shop.migrateHook" -}}
{{- if eq (include "shop.dbMode" .) "external" -}}
pre-install,pre-upgrade
{{- else if not .root.Release.IsInstall -}}
pre-upgrade
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- faults

The ConfigMap "<fullname>-faults" (faults.yaml) is mounted as a directory at
"shop.faultsDir" in every service, never with a subPath (a subPath mount is
never updated), and FAULTS_FILE names its flags.json.
*/}}

{{- define "shop.faultsDir" -}}/etc/shop/faults{{- end -}}

{{/* ---------------------------------------------------------------- misc */}}

{{- define "shop.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "shop.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}
