{{/* Names and labels shared by every manifest. */}}

{{- define "minivess.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "minivess.fullname" -}}
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

{{- define "minivess.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "minivess.selectorLabels" -}}
app.kubernetes.io/name: {{ include "minivess.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The workers' pods (workers.yaml): not matched by the StatefulSet's selector, so no
Service, PodDisruptionBudget or NetworkPolicy of the ingest tier selects them. */}}
{{- define "minivess.workerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "minivess.name" . }}-worker
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "minivess.labels" -}}
helm.sh/chart: {{ include "minivess.chart" . }}
{{ include "minivess.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: minivess
{{- end }}

{{- define "minivess.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "minivess.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The StatefulSet's pods get the GPU unless scaled out (then only the workers,
workers.yaml, do: the ingest tier runs no inference). */}}
{{- define "minivess.gpuPods" -}}
{{- if and .Values.gpu.enabled (not .Values.scaleOut.enabled) }}true{{- end }}
{{- end }}

{{/* Scaled out: what it needs, refused with a specific message when missing. */}}
{{- define "minivess.scaleOutChecks" -}}
{{- if .Values.scaleOut.enabled }}
{{- if not .Values.scaleOut.journal.url }}
{{- fail "scaleOut.enabled needs scaleOut.journal.url (postgresql://USER@HOST:PORT/DATABASE)" }}
{{- end }}
{{- if not .Values.scaleOut.sharedStorage.existingClaim }}
{{- fail "scaleOut.enabled needs scaleOut.sharedStorage.existingClaim (a ReadWriteMany PersistentVolumeClaim shared by the gateway and the workers)" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The journal password is in the Secret: secrets.journalPassword, or
scaleOut.journal.existingSecretHasPassword for an existing Secret. */}}
{{- define "minivess.journalPassword" -}}
{{- if and .Values.scaleOut.enabled (or .Values.secrets.journalPassword .Values.scaleOut.journal.existingSecretHasPassword) }}true{{- end }}
{{- end }}

{{/* The image: repository@digest, or repository:tag (appVersion, "-gpu" for the GPU variant)
of the StatefulSet's pods; "minivess.imageRef" takes (dict "root" . "gpu" BOOL). */}}
{{- define "minivess.image" -}}
{{- include "minivess.imageRef" (dict "root" . "gpu" (include "minivess.gpuPods" .)) }}
{{- end }}

{{- define "minivess.imageRef" -}}
{{- $v := .root.Values }}
{{- if $v.image.digest }}
{{- printf "%s@%s" $v.image.repository $v.image.digest }}
{{- else }}
{{- $tag := default .root.Chart.AppVersion $v.image.tag }}
{{- if and .gpu (not $v.image.tag) }}
{{- $tag = printf "%s-gpu" $tag }}
{{- end }}
{{- printf "%s:%s" $v.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "minivess.secretName" -}}
{{- default (printf "%s-secrets" (include "minivess.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "minivess.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "minivess.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/* The port serving /metrics: metrics.port, or the HTTP port. */}}
{{- define "minivess.metricsPort" -}}
{{- if and .Values.metrics.port (ne (int .Values.metrics.port) (int .Values.http.port)) }}
{{- .Values.metrics.port }}
{{- else }}
{{- .Values.http.port }}
{{- end }}
{{- end }}

{{- define "minivess.separateMetricsPort" -}}
{{- if and .Values.metrics.port (ne (int .Values.metrics.port) (int .Values.http.port)) }}true{{- end }}
{{- end }}

{{/* A CA (ca.crt) is in the TLS Secret: tls.ca, or tls.existingSecretHasCA for an existing Secret. */}}
{{- define "minivess.tlsCA" -}}
{{- if .Values.tls.existingSecret }}
{{- if .Values.tls.existingSecretHasCA }}true{{- end }}
{{- else if .Values.tls.ca }}true{{- end }}
{{- end }}
