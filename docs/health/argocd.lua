-- Argo CD health check for the s3-resource-operator.io kinds S3Bucket, S3User,
-- S3Store and ClusterS3Store (one script for all four; docs/health-checks.md
-- shows how to install it). Lua 5.1, as Argo CD runs it in gopher-lua.
--
-- It reads the operator's conditions the way kstatus (Flux, kpt) does, so
-- both tools agree on an object:
--   Stalled=True      the operator needs a change from the user  -> Degraded
--   Reconciling=True  work or a retryable wait is under way      -> Progressing
--   Ready=True        the backend resource matches the spec      -> Healthy
-- A status that describes an older generation of the spec says nothing about
-- the current one, so it counts as Progressing whatever its conditions say.

local function find_condition(conditions, wanted)
  for _, condition in ipairs(conditions) do
    if condition.type == wanted then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

-- "<reason>: <message>", or whichever of the two the condition has.
local function describe(condition, fallback)
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  elseif message ~= "" then
    return message
  elseif reason ~= "" then
    return reason
  end
  return fallback
end

-- Whether a condition was written for the current generation; one without
-- observedGeneration is taken at the status's word.
local function is_current(condition, generation)
  return generation == nil or condition.observedGeneration == nil or condition.observedGeneration >= generation
end

local function health(obj)
  local metadata = obj.metadata or {}
  local generation = metadata.generation
  local status = obj.status
  local waiting = "Waiting for the operator to observe generation " .. tostring(generation or 1)

  if status == nil or status.conditions == nil or #status.conditions == 0 then
    return { status = "Progressing", message = waiting }
  end
  if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
    return { status = "Progressing", message = waiting }
  end

  local conditions = status.conditions
  local stalled = find_condition(conditions, "Stalled")
  if is_true(stalled) then
    return { status = "Degraded", message = describe(stalled, "Stalled") }
  end

  local reconciling = find_condition(conditions, "Reconciling")
  if metadata.deletionTimestamp ~= nil then
    -- The reason would only repeat "Deleting"; the message says what is left to do.
    if is_true(reconciling) and (reconciling.message or "") ~= "" then
      return { status = "Progressing", message = "Deleting: " .. reconciling.message }
    end
    return { status = "Progressing", message = "Deleting" }
  end
  if is_true(reconciling) then
    return { status = "Progressing", message = describe(reconciling, "Reconciling") }
  end

  local ready = find_condition(conditions, "Ready")
  if is_true(ready) and is_current(ready, generation) then
    return { status = "Healthy", message = ready.message or "Ready" }
  end
  if ready == nil then
    return { status = "Progressing", message = "Waiting for the Ready condition" }
  end
  if not is_current(ready, generation) then
    return { status = "Progressing", message = waiting }
  end
  return { status = "Progressing", message = describe(ready, "Not ready") }
end

return health(obj)
