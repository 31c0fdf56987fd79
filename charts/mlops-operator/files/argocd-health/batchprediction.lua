-- Argo CD health check for BatchPrediction (mlops.dev). Key: resource.customizations.health.mlops.dev_BatchPrediction
-- Phases -> health: Succeeded Healthy, Pending Healthy (waits for its next trigger), Running Progressing, Failed Degraded. Message: the Ready condition's reason and message.
local health = {Succeeded = "Healthy", Pending = "Healthy", Running = "Progressing", Failed = "Degraded"}
local hs = {status = "Progressing", message = "Waiting for the operator to report a status"}
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local st = obj.status
local meta = obj.metadata or {}
local generation = meta.generation
-- A deletion bumps the generation too: a terminating object keeps its last verdict.
if meta.deletionTimestamp == nil and generation ~= nil and st.observedGeneration ~= nil
    and st.observedGeneration < generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
hs.status = health[st.phase] or "Unknown"
hs.message = st.phase
for _, c in ipairs(st.conditions or {}) do
  if c.type == "Ready" then
    if c.reason ~= nil and c.reason ~= "" then hs.message = hs.message .. " (" .. c.reason .. ")" end
    if c.message ~= nil and c.message ~= "" then hs.message = hs.message .. ": " .. c.message end
  end
end
-- Stalled (kstatus: a terminal failure, or a spec the operator cannot act on) is Degraded whatever the phase.
for _, c in ipairs(st.conditions or {}) do
  if c.type == "Stalled" and c.status == "True" and hs.status ~= "Degraded" then
    hs.status = "Degraded"
    hs.message = hs.message .. "; stalled (" .. (c.reason or "") .. "): " .. (c.message or "")
  end
end
return hs
