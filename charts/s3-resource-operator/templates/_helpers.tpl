{{/*
The chart name, or nameOverride.
*/}}
{{- define "s3-resource-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources: fullnameOverride, else "<release>-<name>" (just the
release name when it already contains the chart name), at most 63 characters.
*/}}
{{- define "s3-resource-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "s3-resource-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "s3-resource-operator.labels" -}}
helm.sh/chart: {{ include "s3-resource-operator.chart" . }}
{{ include "s3-resource-operator.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the operator's pods.
*/}}
{{- define "s3-resource-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "s3-resource-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "s3-resource-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "s3-resource-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The backend name in lower case (BACKEND_NAME is case-insensitive).
*/}}
{{- define "s3-resource-operator.backend" -}}
{{- lower .Values.operator.backend_name }}
{{- end }}

{{/*
"true" when the operator has a default store (operator.backend_name set), else empty. Without
one the chart sets no BACKEND_NAME and neither creates nor reads the credentials Secret.
*/}}
{{- define "s3-resource-operator.hasDefaultStore" -}}
{{- if .Values.operator.backend_name }}true{{ end }}
{{- end }}

{{/*
"true" when the chart creates the credentials Secret: a default store, and operator.secret.create.
*/}}
{{- define "s3-resource-operator.createSecret" -}}
{{- if and (include "s3-resource-operator.hasDefaultStore" .) .Values.operator.secret.create }}true{{ end }}
{{- end }}

{{/*
The Secret holding the operator's credentials for the object store.
*/}}
{{- define "s3-resource-operator.secretName" -}}
{{- if .Values.operator.secret.create }}
{{- default (include "s3-resource-operator.fullname" .) .Values.operator.secret.name }}
{{- else }}
{{- if not .Values.operator.secret.name }}
{{- fail "operator.secret.name must name an existing Secret when operator.secret.create is false (it must hold S3_ENDPOINT_URL, S3_ACCESS_KEY or ROOT_ACCESS_KEY, and S3_SECRET_KEY or ROOT_SECRET_KEY); or set operator.secret.create=true and give operator.secret.data" }}
{{- end }}
{{- .Values.operator.secret.name }}
{{- end }}
{{- end }}

{{/*
The leader-election Lease's name.
*/}}
{{- define "s3-resource-operator.leaseName" -}}
{{- default (include "s3-resource-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
LOG_LEVEL: the older operator's CRITICAL means ERROR; the operator takes the rest as given.
*/}}
{{- define "s3-resource-operator.logLevel" -}}
{{- $level := upper .Values.operator.logLevel }}
{{- if eq $level "CRITICAL" }}ERROR{{ else }}{{ $level }}{{ end }}
{{- end }}

{{/*
Checks across values that the schema cannot express; fails rendering with a message naming the
value to set. Included by the Deployment, which every configuration renders.
*/}}
{{- define "s3-resource-operator.validate" -}}
{{- $backend := include "s3-resource-operator.backend" . }}
{{- $secret := .Values.operator.secret }}
{{- $data := $secret.data | default dict }}
{{- /* Without a default store (backend_name "") no credentials are read: nothing to check. */}}
{{- if $backend }}
{{- $_ := include "s3-resource-operator.secretName" . }}
{{- if $secret.create }}
{{- if ne $backend "aws" }}
{{- if not $data.S3_ENDPOINT_URL }}
{{- fail (printf "operator.secret.data.S3_ENDPOINT_URL is required when operator.secret.create is true: the S3 endpoint of the %s store, e.g. http://%s.storage:7070 (or set operator.secret.create=false and operator.secret.name to an existing Secret)" $backend $backend) }}
{{- end }}
{{- if not (or $data.S3_ACCESS_KEY $data.ROOT_ACCESS_KEY) }}
{{- fail "operator.secret.data.S3_ACCESS_KEY (or ROOT_ACCESS_KEY) is required when operator.secret.create is true: the object store's admin access key (or set operator.secret.create=false and operator.secret.name to an existing Secret)" }}
{{- end }}
{{- if not (or $data.S3_SECRET_KEY $data.ROOT_SECRET_KEY) }}
{{- fail "operator.secret.data.S3_SECRET_KEY (or ROOT_SECRET_KEY) is required when operator.secret.create is true: the object store's admin secret key (or set operator.secret.create=false and operator.secret.name to an existing Secret)" }}
{{- end }}
{{- else if ne (not (or $data.S3_ACCESS_KEY $data.ROOT_ACCESS_KEY)) (not (or $data.S3_SECRET_KEY $data.ROOT_SECRET_KEY)) }}
{{- fail "operator.secret.data: with backend_name aws give both S3_ACCESS_KEY (or ROOT_ACCESS_KEY) and S3_SECRET_KEY (or ROOT_SECRET_KEY), or neither to use the AWS credential chain (IRSA, instance metadata)" }}
{{- end }}
{{- end }}
{{- if eq $backend "garage" }}
{{- if not .Values.operator.garage.adminEndpoint }}
{{- fail "operator.garage.adminEndpoint is required with backend_name garage: Garage's admin API endpoint, e.g. http://garage.storage:3903" }}
{{- end }}
{{- if and $secret.create (not .Values.operator.garage.adminToken.secretName) (not (index $data .Values.operator.garage.adminToken.secretKey)) }}
{{- fail (printf "operator.secret.data.%s is required with backend_name garage when operator.secret.create is true: Garage's admin API token (or set operator.garage.adminToken.secretName to a Secret holding it)" .Values.operator.garage.adminToken.secretKey) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount above 1 needs leaderElection.enabled=true: without it every replica would reconcile the same objects at once" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled=true: the ServiceMonitor scrapes the metrics Service" }}
{{- end }}
{{- range $key, $_ := include "s3-resource-operator.selectorLabels" . | fromYaml }}
{{- if hasKey $.Values.podLabels $key }}
{{- fail (printf "podLabels.%s: the chart sets this label itself (the Deployment selects its pods by it)" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The operator's rights on its own resources, Secrets and Events: a ClusterRole's rules, or with
operator.watchNamespace a Role's in that namespace. Exactly what the operator calls:
- S3Bucket, S3User: read and watch; patch (finalizers, server-side apply). Status: read, patch.
- Secrets: read and watch (compatibility mode's annotated Secrets, S3User credentials);
  patch, because credentials Secrets are written with server-side apply; and create, because
  the API server authorises a server-side apply that creates an object as a create as well.
- Events (events.k8s.io): create, and patch to count repeats of an event.
*/}}
{{- /*
Cluster-wide only: ClusterS3Stores, and the namespaces' labels their namespace selectors match.
*/}}
{{- define "s3-resource-operator.clusterRules" -}}
- apiGroups: ["s3-resource-operator.io"]
  resources: ["clusters3stores"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["s3-resource-operator.io"]
  resources: ["clusters3stores/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{- define "s3-resource-operator.rules" -}}
- apiGroups: ["s3-resource-operator.io"]
  resources: ["s3buckets", "s3users", "s3stores"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["s3-resource-operator.io"]
  resources: ["s3buckets/status", "s3users/status", "s3stores/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
