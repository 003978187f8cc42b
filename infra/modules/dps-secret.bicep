// Copies one key of a DPS shared access policy into Key Vault as the app's DPS connection string.
// Deployed in the vault's resource group; the DPS may live elsewhere (its resource ID is a parameter).
targetScope = 'resourceGroup'

@description('Name of the Key Vault (in this resource group).')
param vaultName string

@description('Name of the secret to write.')
param secretName string

@description('Resource ID of the existing DPS instance.')
param dpsResourceId string

@description('Shared access policy whose key is copied (EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite).')
param policyName string

@allowed(['primary', 'secondary'])
param keySlot string = 'primary'

var dpsParts = split(dpsResourceId, '/')
// POST .../provisioningServices/{name}/keys/{policy}/listkeys reads the one policy, not every key of the DPS.
var policyId = '${dpsResourceId}/keys/${policyName}'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource dps 'Microsoft.Devices/provisioningServices@2022-12-12' existing = {
  name: last(dpsParts)
  scope: resourceGroup(dpsParts[2], dpsParts[4])
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: no expiry on purpose: Key Vault refuses to return an expired secret, which would silently stop every revocation; rotation is by DPS key slot (docs/deploy.md)
  parent: vault
  name: secretName
  properties: {
    contentType: 'text/plain; DPS service connection string'
    value: 'HostName=${dps.properties.serviceOperationsHostName};SharedAccessKeyName=${policyName};SharedAccessKey=${keySlot == 'primary' ? listKeys(policyId, '2022-12-12').primaryKey : listKeys(policyId, '2022-12-12').secondaryKey}'
  }
}

@description('Versionless URI of the secret (not its value).')
output secretUri string = secret.properties.secretUri
