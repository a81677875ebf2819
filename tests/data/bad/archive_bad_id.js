window.YTD.following.part0 = [
  { "following" : { "accountId" : "abc" } },
  { "following" : { "accountId" : "3" } }
]
